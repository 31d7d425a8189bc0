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

Each magic parses its line with its own argparse parser (`@_arguments`: the flags the CLI shares come
from `mlmagics.arguments`), makes one call into `mlmagics.core`, and returns a result object that
renders as HTML in a notebook and as text elsewhere. A bad argument — or anything the core refuses —
is one `UsageError` line, never a traceback (`@_one_line_errors`). `%deploy?` shows a magic's
arguments; `%config DeployMagics` lists the settings.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import re
import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

import requests
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class, needs_local_scope, no_var_expand
from IPython.display import display
from traitlets import Bool, Enum, Float, Int, Unicode

from mlmagics import arguments
from mlmagics import display as show
from mlmagics.core import DeploymentPlan, DockerWebservice, Model, NullProgress, TextProgress, Webservice, Workspace, check_script
from mlmagics.core.deploy import create_image, deploy, resolve_image, resolve_model
from mlmagics.core.errors import MlmagicsError

Builder = Callable[[argparse.ArgumentParser], Any]


# -- the one parsing idiom: @_arguments declares a magic's parser, _parse(self.magic, line) uses it -------------
class _HelpShown(Exception):
    """--help printed the magic's help: the magic ends there, returning nothing."""


class _Parser(argparse.ArgumentParser):
    """A magic's parser: a mistake raises a one-line UsageError instead of exiting the kernel."""

    raw_body = False  # see _arguments

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message, end="")
        raise _HelpShown


def _argument(*names: str, **settings: Any) -> Builder:
    """One argument for `_arguments`, as `parser.add_argument(*names, **settings)` takes it."""
    return lambda parser: parser.add_argument(*names, **settings)


def _arguments(*builders: Builder, raw_body: bool = False) -> Callable[[Callable], Callable]:
    """Declare a magic's arguments: each builder adds some to its parser (an `_argument`, or one of
    `mlmagics.arguments`' groups the CLI takes too). The parser's help, the docstring first, becomes the
    magic's docstring: what `%name?` shows.

    With `raw_body=True` the words after the first one, up to the trailing options, are one argument kept
    as typed: a JSON body keeps its quotes and spaces (`%test_service svc {"a": "x y"} --bench 5`)."""

    def declare(magic: Callable) -> Callable:
        parser = _Parser(
            prog=f"%{magic.__name__}",
            description=inspect.cleandoc(magic.__doc__ or ""),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.raw_body = raw_body
        for build in builders:
            build(parser)
        magic.parser = parser
        magic.__doc__ = parser.format_help()
        return magic

    return declare


def _parse(magic: Any, line: str) -> argparse.Namespace:
    """The line parsed by the magic's parser (`_arguments`), its words split as a shell splits them."""
    parser: _Parser = magic.parser
    try:
        words = _body_and_options(parser, line) if parser.raw_body else shlex.split(line)
    except ValueError as e:  # shlex: an unclosed quote
        raise UsageError(f"{parser.prog}: {e}") from None
    return parser.parse_args(words)


def _body_and_options(parser: _Parser, line: str) -> list[str]:
    """'svc {"x": 1} --bench 30' -> ['svc', '{"x": 1}', '--bench', '30']: the first word, the text up to the
    trailing `--option value` pairs as typed, then those pairs."""
    first, _, rest = line.strip().partition(" ")
    words = list(re.finditer(r"\S+", rest))
    options = parser._option_string_actions  # argparse names its option strings nowhere public
    end = len(words)
    while end >= 2 and words[end - 2].group() in options:
        end -= 2
    body = rest[: words[end].start()] if end < len(words) else rest
    return [first, body.strip(), *(word.group() for word in words[end:])]


# -- the one error idiom -----------------------------------------------------------------------------------
def _one_line_errors(magic: Callable) -> Callable:
    """What the core refuses (its errors are one line that says what to do) and a missing file become a
    UsageError: the message, no traceback. After --help the magic returns nothing."""

    @functools.wraps(magic)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return magic(*args, **kwargs)
        except _HelpShown:
            return None
        except MlmagicsError as e:
            raise UsageError(e.message) from None
        except FileNotFoundError as e:
            raise UsageError(f"{e.filename}: no such file") from None

    return run


@magics_class
class DeployMagics(Magics):
    """Deploy models as web services and operate them from the notebook."""

    workspace = Unicode(
        "", config=True,
        help="A workspace folder, or a config file naming a team's stores (.mlmagics/config.json); empty means "
        "$MLMAGICS_WORKSPACE, else $MLMAGICS_HOME, else ~/.mlmagics.",
    )  # fmt: skip
    default_target = Enum(
        arguments.target_choices(),
        arguments.default_target_name(),
        allow_none=True,  # $MLMAGICS_DEFAULT_TARGET names no target: the form starts with the first one
        config=True,
        help="Target the deploy form starts with (default: the core's default target).",
    )
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
    def ws(self) -> Workspace:
        return Workspace(self.workspace or None)

    def reporter(self):
        """A progress to hand to the core: a widget in a notebook kernel, else text."""
        mode = self.progress
        if mode == "auto":
            mode = "widget" if getattr(self.shell, "kernel", None) is not None else "text"
        if mode == "widget":
            from mlmagics.widgets import WidgetProgress  # ipywidgets: imported once a widget is shown, not by %load_ext

            progress = WidgetProgress(show_logs=self.show_logs)
            display(progress)
            return progress
        if mode == "text":
            return TextProgress(show_logs=self.show_logs)
        return NullProgress()

    # -- scripts ------------------------------------------------------------------------------------------
    @no_var_expand
    @cell_magic
    @_one_line_errors
    @_arguments(
        _argument("-a", "--append", action="store_true", help="Append to the file instead of overwriting it."),
        _argument("--no-check", action="store_true", help="Write without checking."),
        _argument("filename", nargs="?", default="score.py", help="File to write (default score.py)."),
    )
    def score_script(self, line: str, cell: str):
        """Write the cell to a scoring script (like %%writefile) and check it: syntax, init()/run(),
        run()'s signature against its schema decorators, imports."""
        args = _parse(self.score_script, line)
        filename = os.path.expanduser(args.filename)
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
    @line_magic
    @_one_line_errors
    @_arguments(
        _argument("path", help="File or folder to register."),
        _argument("--name", required=True, help="Model name; versions auto-increment."),
        _argument("--tag", action="append", help="key=value (repeatable)."),
        _argument("--property", action="append", help="key=value (repeatable)."),
        _argument("--description", nargs="+", help="Free text."),
    )
    def register_model(self, line: str):
        """Register a file or folder as the next version of a model."""
        args = _parse(self.register_model, line)
        model = Model.register(
            self.ws(),
            args.path,
            args.name,
            tags=arguments.key_values(args.tag),
            properties=arguments.key_values(args.property, "property"),
            description=" ".join(args.description or []) or None,
        )
        return show.model_card(model)

    @line_magic
    @_one_line_errors
    @_arguments(
        _argument("name", help="Image name; versions auto-increment."),
        _argument("--script", required=True, help="Scoring script (init() + run())."),
        _argument("--model", action="append", default=[], help="Model NAME[:VERSION] (repeatable)."),
        _argument("--requirements", help="pip requirements file."),
        _argument("--conda-file", help="conda environment file."),
        _argument("--runtime", choices=["python", "spark-py"], default="python"),
        _argument("--dependency", action="append", help="Extra file or folder next to the script (repeatable)."),
        _argument("--description", nargs="+"),
        _argument("--docker", action="store_true", help="Also build the Docker image now."),
    )
    def build_image(self, line: str):
        """Create the next version of an image from a script, models and an environment."""
        args = _parse(self.build_image, line)
        progress = self.reporter()
        image = create_image(
            self.ws(),
            args.name,
            args.model,
            args.script,
            args.requirements,
            args.conda_file,
            args.runtime,
            args.dependency,
            " ".join(args.description or []) or None,
            progress=progress,
        )
        if args.docker:
            DockerWebservice.build_image(image, progress=progress)
        return show.image_card(image)

    # -- services -------------------------------------------------------------------------------------------
    @line_magic
    @_one_line_errors
    @_arguments(
        _argument("target", choices=arguments.target_choices(), help=f"where to run it: {arguments.target_help()}"),
        _argument("name", help="service name"),
        _argument("--update", action="store_true", help="update the service if it exists"),
        _argument("--no-wait", action="store_true", help="return without waiting for Healthy"),
        arguments.add_source_options,
        arguments.add_deploy_options,
    )
    def deploy(self, line: str):
        """Deploy an image, or models + a script, as a service, and wait until it is Healthy."""
        args = _parse(self.deploy, line)
        service = deploy(self.ws(), args.name, progress=self.reporter(), **arguments.deploy_request(args))
        return self._service_card(service)

    def _service_card(self, service: Webservice | DeploymentPlan):
        if isinstance(service, DeploymentPlan):  # a dry run: the manifests are the result
            return show.ManifestPlan.of(service)
        return show.service_card(service, reveal_keys=self.reveal_keys)

    def _service(self, name: str) -> Webservice:
        if not name:
            raise UsageError("give a service name; %services lists them")
        return Webservice(self.ws(), name)

    @no_var_expand
    @needs_local_scope
    @line_cell_magic
    @_one_line_errors
    @_arguments(
        _argument("name", help="the service, or a $variable holding its name"),
        _argument("body", nargs="?", default="", help="the request: JSON, a $variable or @file; as a cell magic, the cell"),
        _argument("--bench", type=arguments.positive_int("--bench"), metavar="N", help="send N requests; plot the latencies"),
        _argument(
            "--concurrency",
            type=arguments.positive_int("--concurrency"),
            metavar="C",
            help="requests in flight with --bench (default: DeployMagics.bench_concurrency)",
        ),
        raw_body=True,
    )
    def test_service(self, line: str, cell: str | None = None, local_ns: dict | None = None):
        """Score a service and show the status, the latency and the answer (a table for lists):
        %test_service NAME [JSON | $variable | @file] [--bench N [--concurrency C]]; as a cell magic, the cell
        is the body. The options come last; the body in between is sent as typed."""
        args = _parse(self.test_service, line)
        name = args.name
        namespace = {**self.shell.user_ns, **(local_ns or {})}
        if name.startswith("$"):  # $service_name: the name from a notebook variable
            if name[1:] not in namespace:
                raise UsageError(f"{name} is not defined in the notebook")
            name = str(namespace[name[1:]])
        if not name:
            raise UsageError("give a service name; %services lists them")
        payload = self._payload((cell if cell is not None else args.body).strip(), namespace)
        service = self._service(name)
        if args.bench:
            return self._bench(service, payload, args.bench, args.concurrency or self.bench_concurrency)
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

    def _score_once(self, service: Webservice, payload: bytes) -> show.TestResult:
        if not service.scoring_uri:
            raise UsageError(f"service {service.name} has no scoring URI ({service.state}); %logs {service.name} says why")
        started = time.perf_counter()
        response = service.request(data=payload, timeout=self.test_timeout)
        latency = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            return show.TestResult(service.name, response.status_code, latency, None, message)
        answer = response.json() if response.headers.get("content-type", "").startswith("application/json") else response.content
        return show.TestResult(service.name, 200, latency, answer)

    def _bench(self, service: Webservice, payload: bytes, count: int, concurrency: int) -> show.BenchResult:
        session = requests.Session()  # one connection pool: what a real client keeps

        def one(_: int) -> tuple[float | None, int]:
            started = time.perf_counter()
            try:
                response = service.request(data=payload, timeout=self.test_timeout, session=session)
            except MlmagicsError:
                return None, 0
            ms = (time.perf_counter() - started) * 1000
            rows = response.headers.get("x-mlmagics-batch-rows", "")  # a proxy may pass anything on: digits only
            return (ms if response.status_code == 200 else None), int(rows) if rows.isdigit() and len(rows) < 9 else 0

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            results = list(pool.map(one, range(count)))
        seconds = time.perf_counter() - started
        latencies = [ms for ms, _ in results if ms is not None]
        batches = [rows for _, rows in results if rows]  # the rows of the run() call that answered each request
        return show.BenchResult(service.name, latencies, len(results) - len(latencies), seconds, concurrency, batches)

    @line_magic
    @_one_line_errors
    @_arguments(_argument("--target", help=f"Only services on this target: {arguments.target_help()}."))
    def services(self, line: str):
        """List the services with their live state."""
        args = _parse(self.services, line)
        return show.services_table(Webservice.list(self.ws(), compute_type=args.target, refresh=True))

    @line_magic
    @_one_line_errors
    @_arguments(
        _argument("name"),
        _argument(
            "-n", "--lines", type=arguments.positive_int("--lines"), default=50, help="How many of the last lines (default 50)."
        ),
    )
    def logs(self, line: str):
        """Show a service's last log lines, readable."""
        args = _parse(self.logs, line)
        service = self._service(args.name)
        return show.LogView(service.name, service.get_logs(num_lines=args.lines).splitlines())

    @line_magic
    @_one_line_errors
    @_arguments(arguments.add_update_options)
    def update(self, line: str):
        """Move a service to another image or settings: %update NAME --image NAME:V [settings]."""
        args = _parse(self.update, line)
        service = self._service(args.name)
        image = resolve_image(service.workspace, args.image) if args.image else None
        service.update(image=image, progress=self.reporter(), **arguments.update_settings(args))
        return self._service_card(service)

    @line_magic
    @_one_line_errors
    @_arguments(
        _argument("kind", choices=["service", "image", "model"]),
        _argument("id", help="service name, or image/model NAME:VERSION"),
        _argument("--delete-collected-data", action="store_true", help="A service: remove the data it collected too."),
    )
    def delete(self, line: str):
        """Delete a service, an image or a model (the core refuses what is still in use, and says why).
        A service's collected data stays, and this says where, unless --delete-collected-data."""
        args = _parse(self.delete, line)
        if args.delete_collected_data and args.kind != "service":
            raise UsageError("--delete-collected-data is for a service")
        if args.kind == "service":
            service = self._service(args.id)
            service.delete(delete_collected_data=args.delete_collected_data)
            return show.Message(service.deleted_summary("--delete-collected-data"))
        target = resolve_image(self.ws(), args.id) if args.kind == "image" else resolve_model(self.ws(), args.id)
        target.delete()
        return show.Message(f"Deleted {args.kind} {target.id}")

    @line_magic
    @_one_line_errors
    @_arguments(
        _argument("name"),
        _argument("--version", default="2", choices=["2", "3", "3.1"]),
        _argument("--raw", action="store_true", help="Return the JSON document instead of the rendered view."),
    )
    def swagger(self, line: str):
        """Show a service's API document (swagger), rendered."""
        args = _parse(self.swagger, line)
        service = self._service(args.name)
        document = service.get_swagger(args.version, self.test_timeout)
        return document if args.raw else show.SwaggerView(service.name, document)

    @line_magic
    @_one_line_errors
    def deploy_form(self, line: str):
        """A form to deploy from the workspace's models and images, with live progress."""
        from mlmagics.widgets import DeployForm  # ipywidgets: imported once a widget is shown, not by %load_ext

        return DeployForm(self.ws(), default_target=self.default_target)


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
