"""IPython magics: the deploy workflow from notebook cells. `%load_ext mlmagics` adds them.

    %%score_script score.py          # writes the cell (like %%writefile) and checks it at once
    %register_model outputs/model.pkl --name sklearn_mnist --tag key=0.1
    %build_image myimage --script score.py --model sklearn_mnist
    %deploy local mnist --image myimage:1
    %test_service mnist {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}
    %test_service mnist $payload --bench 200
    %services
    %logs mnist -n 20
    %update mnist --image myimage:2
    %swagger mnist
    %delete service mnist
    %deploy_form

Each magic parses its line, makes one call into `mlmagics.core`, and returns a result object
that renders as HTML in a notebook and as text elsewhere. A bad argument — or anything the
core refuses — is one `UsageError` line, never a traceback. `%config DeployMagics` lists the
settings.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class, needs_local_scope, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Bool, Enum, Float, Int, Unicode

from mlmagics import arguments
from mlmagics import display as show
from mlmagics.core.errors import MlmagicsError

TARGETS = ["local", "docker", "aci", "kubernetes", "aks"]


def _text(words: list[str] | None) -> str | None:
    """--description words ... joined, without the quotes the user typed around them."""
    if not words:
        return None
    text = " ".join(words)
    return text[1:-1] if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"" else text


def _split_first(line: str) -> tuple[str, str]:
    line = line.strip()
    head, _, rest = line.partition(" ")
    return head, rest.strip()


@magics_class
class DeployMagics(Magics):
    """Deploy models as web services and operate them from the notebook."""

    workspace = Unicode("", config=True, help="Workspace folder; empty means $MLMAGICS_HOME, else ~/.mlmagics.")
    default_target = Enum(TARGETS, "local", config=True, help="Target the deploy form starts with.")
    progress = Enum(
        ["auto", "widget", "text", "none"],
        "auto",
        config=True,
        help="How long work is shown: a widget bar with live log lines (auto in a notebook), text, or nothing.",
    )
    show_logs = Bool(True, config=True, help="Show build and deploy log lines live.")
    reveal_keys = Bool(False, config=True, help="Show service keys in full in result cards (masked by default).")
    test_timeout = Float(60.0, config=True, help="Seconds %test_service waits for one answer.")
    bench_concurrency = Int(
        1, config=True, help="Requests %test_service --bench keeps in flight when --concurrency is not given."
    )

    # -- shared helpers ---------------------------------------------------------------------------------
    def ws(self):
        from mlmagics.core import Workspace

        return Workspace(self.workspace or None)

    def reporter(self):
        """A progress to hand to the core: a widget in a notebook kernel, else text."""
        from mlmagics.core import NullProgress, TextProgress

        mode = self.progress
        if mode == "auto":
            mode = "widget" if getattr(self.shell, "kernel", None) is not None else "text"
        if mode == "widget":
            from mlmagics.widgets import WidgetProgress

            progress = WidgetProgress(show_logs=self.show_logs)
            display(progress)
            return progress
        if mode == "text":
            return TextProgress(show_logs=self.show_logs)
        return NullProgress()

    def _call(self, func, *args, **kwargs):
        """Run a core call; whatever it refuses becomes a one-line UsageError."""
        try:
            return func(*args, **kwargs)
        except MlmagicsError as e:
            raise UsageError(e.message) from None
        except FileNotFoundError as e:
            raise UsageError(f"{e.filename}: no such file") from None

    # -- scripts ------------------------------------------------------------------------------------------
    @magic_arguments()
    @argument("-a", "--append", action="store_true", default=False, help="Append to the file instead of overwriting it.")
    @argument("--no-check", action="store_true", help="Write without checking.")
    @argument("filename", nargs="?", default="score.py", help="File to write (default score.py).")
    @no_var_expand
    @cell_magic
    def score_script(self, line: str, cell: str):
        """Write the cell to a scoring script (like %%writefile) and check it: syntax, init()/run(),
        run()'s signature against its schema decorators, imports."""
        from mlmagics.core import check_script

        args = parse_argstring(self.score_script, line)
        filename = os.path.expanduser(args.filename.strip("\"'"))
        path = Path(filename)
        action = "Appending to" if args.append else "Overwriting" if path.exists() else "Writing"
        with open(path, "a" if args.append else "w", encoding="utf-8") as f:
            f.write(cell)
        if args.no_check:
            return show.Message(f"{action} {filename}")
        facts = check_script(
            path.read_text(encoding="utf-8"), filename, local_modules={p.stem for p in path.resolve().parent.glob("*.py")}
        )
        return show.Problems(filename, action, facts.problems, facts.style)

    # -- models and images ----------------------------------------------------------------------------------
    @magic_arguments()
    @argument("path", help="File or folder to register.")
    @argument("--name", required=True, help="Model name; versions auto-increment.")
    @argument("--tag", action="append", help="key=value (repeatable).")
    @argument("--property", action="append", help="key=value (repeatable).")
    @argument("--description", nargs="+", help="Free text.")
    @line_magic
    def register_model(self, line: str):
        """Register a file or folder as the next version of a model."""
        from mlmagics.core import Model

        args = parse_argstring(self.register_model, line)
        model = self._call(
            Model.register,
            self.ws(),
            args.path,
            args.name,
            tags=self._call(arguments.key_values, args.tag),
            properties=self._call(arguments.key_values, args.property, "property"),
            description=_text(args.description),
        )
        return show.model_card(model)

    @magic_arguments()
    @argument("name", help="Image name; versions auto-increment.")
    @argument("--script", required=True, help="Scoring script (init() + run()).")
    @argument("--model", action="append", default=[], help="Model NAME[:VERSION] (repeatable).")
    @argument("--requirements", help="pip requirements file.")
    @argument("--conda-file", help="conda environment file.")
    @argument("--runtime", choices=["python", "spark-py"], default="python")
    @argument("--dependency", action="append", help="Extra file or folder next to the script (repeatable).")
    @argument("--description", nargs="+")
    @argument("--docker", action="store_true", help="Also build the Docker image now.")
    @line_magic
    def build_image(self, line: str):
        """Create the next version of an image from a script, models and an environment."""
        from mlmagics.core.deploy import create_image

        args = parse_argstring(self.build_image, line)
        progress = self.reporter()
        image = self._call(
            create_image,
            self.ws(),
            args.name,
            args.model,
            args.script,
            args.requirements,
            args.conda_file,
            args.runtime,
            args.dependency,
            _text(args.description),
            progress=progress,
        )
        if args.docker:
            from mlmagics.core import DockerWebservice

            self._call(DockerWebservice.build_image, image, progress=progress)
        return show.image_card(image)

    # -- services -------------------------------------------------------------------------------------------
    @line_magic
    def deploy(self, line: str):
        """Deploy an image (or models + a script) as a service: %deploy TARGET NAME --image NAME:V [settings].

        TARGET is local, docker (aci) or kubernetes (aks). `%deploy --help` lists every setting.
        """
        parser = _UsageParser(prog="%deploy", description="Deploy an image, or models + a script, as a service.")
        parser.add_argument("target", choices=TARGETS, help="where to run it")
        parser.add_argument("name", help="service name")
        parser.add_argument("--update", action="store_true", help="update the service if it exists")
        parser.add_argument("--no-wait", action="store_true")
        arguments.add_source_options(parser)
        arguments.add_deploy_options(parser)
        args = _parse(parser, line)
        if args is None:
            return None
        from mlmagics.core.deploy import deploy

        request = self._call(arguments.deploy_request, args)
        service = self._call(deploy, self.ws(), args.name, progress=self.reporter(), **request)
        return self._service_card(service)

    def _service_card(self, service):
        from mlmagics.core import DeploymentPlan

        if isinstance(service, DeploymentPlan):  # a dry run: the manifests are the result
            return show.ManifestPlan.of(service)
        return show.service_card(service, reveal_keys=self.reveal_keys)

    def _service(self, name: str):
        from mlmagics.core import Webservice

        if not name:
            raise UsageError("give a service name; %services lists them")
        return self._call(Webservice, self.ws(), name)

    @no_var_expand
    @needs_local_scope
    @line_cell_magic
    def test_service(self, line: str, cell: str | None = None, local_ns: dict | None = None):
        """Score a service: %test_service NAME [JSON | $variable | @file] [--bench N [--concurrency C]];
        as a cell magic, the cell is the body. Shows status, latency and the answer (a table for lists)."""
        name, rest = _split_first(line)
        if not name:
            raise UsageError("give a service name; %services lists them")
        namespace = {**self.shell.user_ns, **(local_ns or {})}
        if name.startswith("$"):  # $service_name: the name from a notebook variable
            if name[1:] not in namespace:
                raise UsageError(f"{name} is not defined in the notebook")
            name = str(namespace[name[1:]])
        bench, concurrency = None, self.bench_concurrency
        tokens = rest.split()
        while len(tokens) >= 2 and tokens[-2] in ("--bench", "--concurrency"):
            flag, value = tokens[-2], tokens[-1]
            if not value.isdigit() or int(value) < 1:
                raise UsageError(f"{flag} takes a positive integer, got {value!r}")
            bench, concurrency = (int(value), concurrency) if flag == "--bench" else (bench, int(value))
            tokens = tokens[:-2]
            rest = " ".join(tokens)
        body = cell if cell is not None else rest
        payload = self._payload(body.strip(), namespace)
        service = self._service(name)
        if bench:
            return self._bench(service, payload, bench, concurrency)
        return self._score_once(service, payload)

    def _payload(self, text: str, namespace: dict) -> bytes:
        if not text:
            raise UsageError("give the request body: JSON, $variable or @file (or use %%test_service with the body as the cell)")
        if text.startswith("@"):
            path = Path(text[1:].strip())
            if not path.is_file():
                raise UsageError(f"{path}: no such file")
            return path.read_bytes()
        if text.startswith("$"):
            var = text[1:].strip()
            if var not in namespace:
                raise UsageError(f"${var} is not defined in the notebook")
            return _to_body(namespace[var])
        try:
            json.loads(text)
        except ValueError as e:
            raise UsageError(f"the body is not valid JSON ({e}); quote text as a JSON string or use @file") from None
        return text.encode()

    def _score_once(self, service, payload: bytes) -> show.TestResult:
        if not service.scoring_uri:
            raise UsageError(f"service {service.name} has no scoring URI ({service.state}); %logs {service.name} says why")
        started = time.perf_counter()
        response = self._call(service.request, data=payload, timeout=self.test_timeout)
        latency = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            return show.TestResult(service.name, response.status_code, latency, None, message)
        answer = response.json() if response.headers.get("content-type", "").startswith("application/json") else response.content
        return show.TestResult(service.name, 200, latency, answer)

    def _bench(self, service, payload: bytes, count: int, concurrency: int) -> show.BenchResult:
        from concurrent.futures import ThreadPoolExecutor

        import requests

        session = requests.Session()  # one connection pool: what a real client keeps

        def one(_: int) -> float | None:
            started = time.perf_counter()
            try:
                ok = service.request(data=payload, timeout=self.test_timeout, session=session).status_code == 200
            except MlmagicsError:
                ok = False
            return (time.perf_counter() - started) * 1000 if ok else None

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            results = list(pool.map(one, range(count)))
        seconds = time.perf_counter() - started
        latencies = [r for r in results if r is not None]
        return show.BenchResult(service.name, latencies, len(results) - len(latencies), seconds, concurrency)

    @magic_arguments()
    @argument("--target", help="Only services on this target.")
    @line_magic
    def services(self, line: str):
        """List the services with their live state."""
        from mlmagics.core import Webservice

        args = parse_argstring(self.services, line)
        return show.services_table(self._call(Webservice.list, self.ws(), compute_type=args.target, refresh=True))

    @magic_arguments()
    @argument("name")
    @argument("-n", "--lines", type=int, default=50, help="How many of the last lines (default 50).")
    @line_magic
    def logs(self, line: str):
        """Show a service's last log lines, readable."""
        args = parse_argstring(self.logs, line)
        service = self._service(args.name)
        return show.LogView(service.name, self._call(service.get_logs, num_lines=args.lines).splitlines())

    @line_magic
    def update(self, line: str):
        """Move a service to another image or settings: %update NAME --image NAME:V [settings]."""
        parser = _UsageParser(prog="%update")
        parser.add_argument("name")
        parser.add_argument("--image")
        arguments.add_deploy_options(parser)
        args = _parse(parser, line)
        if args is None:
            return None
        from mlmagics.core.deploy import resolve_image

        service = self._service(args.name)
        image = self._call(resolve_image, service.workspace, args.image) if args.image else None
        settings = {k: v for k, v in self._call(arguments.deploy_settings, args).items() if k != "port"}
        self._call(service.update, image=image, progress=self.reporter(), **settings)
        return self._service_card(service)

    @magic_arguments()
    @argument("kind", choices=["service", "image", "model"])
    @argument("id", help="service name, or image/model NAME:VERSION")
    @argument("--delete-collected-data", action="store_true", help="A service: remove the data it collected too.")
    @line_magic
    def delete(self, line: str):
        """Delete a service, an image or a model (the core refuses what is still in use, and says why).
        A service's collected data stays, and this says where, unless --delete-collected-data."""
        from mlmagics.core.deploy import resolve_image, resolve_model

        args = parse_argstring(self.delete, line)
        if args.delete_collected_data and args.kind != "service":
            raise UsageError("--delete-collected-data is for a service")
        if args.kind == "service":
            service = self._service(args.id)
            self._call(service.delete, delete_collected_data=args.delete_collected_data)
            return show.Message(service.deleted_summary("--delete-collected-data"))
        if args.kind == "image":
            target = self._call(resolve_image, self.ws(), args.id)
            label = f"image {target.id}"
        else:
            target = self._call(resolve_model, self.ws(), args.id)
            label = f"model {target.id}"
        self._call(target.delete)
        return show.Message(f"Deleted {label}")

    @magic_arguments()
    @argument("name")
    @argument("--version", default="2", choices=["2", "3", "3.1"])
    @argument("--raw", action="store_true", help="Return the JSON document instead of the rendered view.")
    @line_magic
    def swagger(self, line: str):
        """Show a service's API document (swagger), rendered."""
        args = parse_argstring(self.swagger, line)
        service = self._service(args.name)
        document = self._call(service.get_swagger, args.version, self.test_timeout)
        return document if args.raw else show.SwaggerView(service.name, document)

    @line_magic
    def deploy_form(self, line: str):
        """A form to deploy from the workspace's models and images, with live progress."""
        from mlmagics.widgets import DeployForm

        return DeployForm(self.ws(), default_target=self.default_target)


class _UsageParser:
    """argparse for line magics whose arguments do not fit @magic_arguments (subcommand-like
    positionals, shared option groups): an error raises a one-line UsageError."""

    def __new__(cls, **kwargs: Any):
        import argparse

        class Parser(argparse.ArgumentParser):
            def error(self, message: str):
                raise UsageError(f"{self.prog}: {message}")

            def exit(self, status: int = 0, message: str | None = None):
                if message:
                    print(message)
                raise _HelpShown()

        return Parser(**kwargs)


class _HelpShown(Exception):
    """--help printed the usage; the magic returns nothing."""


def _parse(parser, line: str):
    import shlex

    try:
        return parser.parse_args(shlex.split(line))
    except _HelpShown:
        return None
    except ValueError as e:  # shlex: an unclosed quote
        raise UsageError(f"{parser.prog}: {e}") from None


def _to_body(value: Any) -> bytes:
    """A notebook variable as a request body: text and bytes as they are, data as JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a DataFrame: records, as inference-schema expects
        value = value.to_dict(orient="records")
    elif hasattr(value, "tolist"):
        value = value.tolist()
    try:
        return json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)).encode()
    except TypeError as e:
        raise UsageError(f"cannot send a {type(value).__name__} as JSON: {e}") from None
