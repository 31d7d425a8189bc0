"""The `mlmagics` command: the deploy workflow for terminals and CI, mirroring the Python API.

    mlmagics model register outputs/model.pkl --name sklearn_mnist --tag key=0.1
    mlmagics image create myimage --script score.py --model sklearn_mnist
    mlmagics service deploy mnist --target local --image myimage:1
    mlmagics service run mnist '{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}'
    mlmagics service list
    mlmagics serve score.py --model-dir azureml-models      # the scoring server in the foreground
    mlmagics quickstart                                      # the whole flow on a small model
    mlmagics migrate deploy.ipynb                            # a v1 notebook's azureml imports -> mlmagics
    mlmagics workspace show                                  # which workspace, its stores, its schema
    mlmagics workspace sweep                                 # objects a killed registration left in a shared store

Every command takes `--workspace DIR|CONFIG` (a folder, or a config file naming a team's stores; default
$MLMAGICS_WORKSPACE, else $MLMAGICS_HOME, else ~/.mlmagics) and `--json` for machine-readable output.
Errors are one line on stderr: exit 1 (2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mlmagics import arguments
from mlmagics.core import DeploymentPlan, Image, Model, NullProgress, TextProgress, Webservice, Workspace
from mlmagics.core.deploy import create_image, deploy, resolve_image, resolve_model
from mlmagics.core.errors import MlmagicsError, UserError
from mlmagics.quickstart import run_quickstart
from mlmagics.serving.__main__ import main as serve_main

_TITLES = {"createdByText": "createdBy"}  # a column's key -> its title, where they differ


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(row.get(c, "") if row.get(c) is not None else "") for c in columns] for row in rows]
    titles = [_TITLES.get(c, c).upper() for c in columns]
    widths = [max(len(t), *(len(r[i]) for r in cells)) for i, t in enumerate(titles)]
    lines = ["  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _workspace(args: argparse.Namespace):
    return Workspace(args.workspace)


def _progress(args: argparse.Namespace):
    return NullProgress() if args.json else TextProgress(stream=sys.stderr)


# -- models ---------------------------------------------------------------------------------------------
def model_register(args: argparse.Namespace) -> None:
    model = Model.register(
        _workspace(args),
        args.path,
        args.name,
        tags=arguments.key_values(args.tag),
        properties=arguments.key_values(args.property, "property"),
        description=args.description,
    )
    _emit(args, model.serialize(), f"Registered model {model.id}")


def model_list(args: argparse.Namespace) -> None:
    models = Model.list(_workspace(args), name=args.name, tags=arguments.key_values(args.tag) or None, latest=args.latest)
    data = [m.serialize() for m in models]
    rows = [{**d, "tags": ",".join(f"{k}={v}" for k, v in d["tags"].items())} for d in data]
    _emit(args, data, _table(rows, ["id", "size", "tags", "createdTime", "createdByText"]))


def model_show(args: argparse.Namespace) -> None:
    data = resolve_model(_workspace(args), args.id).serialize()
    _emit(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()))


def model_delete(args: argparse.Namespace) -> None:
    model = resolve_model(_workspace(args), args.id)
    model.delete()
    _emit(args, {"deleted": model.id}, f"Deleted model {model.id}")


def model_download(args: argparse.Namespace) -> None:
    path = resolve_model(_workspace(args), args.id).download(args.to, exist_ok=args.force)
    _emit(args, {"path": path}, f"Downloaded to {path}")


# -- images ---------------------------------------------------------------------------------------------
def image_create(args: argparse.Namespace) -> None:
    image = create_image(
        _workspace(args),
        args.name,
        args.model or [],
        args.script,
        args.requirements,
        args.conda_file,
        args.runtime,
        args.dependency,
        args.description,
        arguments.key_values(args.tag),
        progress=_progress(args),
    )
    _emit(args, image.serialize(), f"Created image {image.id}")


def image_list(args: argparse.Namespace) -> None:
    images = Image.list(_workspace(args), image_name=args.name)
    data = [i.serialize() for i in images]
    rows = [{**d, "models": ",".join(d["modelIds"])} for d in data]
    _emit(args, data, _table(rows, ["id", "creationState", "models", "createdTime", "createdByText"]))


def image_show(args: argparse.Namespace) -> None:
    data = resolve_image(_workspace(args), args.id).serialize()
    _emit(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()))


def image_delete(args: argparse.Namespace) -> None:
    image = resolve_image(_workspace(args), args.id)
    image.delete()
    _emit(args, {"deleted": image.id}, f"Deleted image {image.id}")


# -- services -------------------------------------------------------------------------------------------
def _service(args: argparse.Namespace):
    return Webservice(_workspace(args), args.name)


def service_deploy(args: argparse.Namespace) -> None:
    service = deploy(_workspace(args), args.name, progress=_progress(args), **arguments.deploy_request(args))
    if isinstance(service, DeploymentPlan):  # a dry run
        files = "\n".join(f"  {f}" for f in service.manifest_files)
        text = (f"Service {service.name} is DryRun: nothing was applied\nmanifests:\n{files}\n"
                f"planned scoring URI: {service.planned_scoring_uri}")  # fmt: skip
    else:
        uris = f"scoring URI: {service.scoring_uri}\nswagger URI: {service.swagger_uri}"
        text = f"Service {service.name} is {service.state}\n{uris}"
    _emit(args, service.serialize(), text)


def service_list(args: argparse.Namespace) -> None:
    services = Webservice.list(_workspace(args), compute_type=args.target, refresh=True)
    data = [s.serialize() for s in services]
    _emit(args, data, _table(data, ["name", "runsOn", "imageId", "state", "scoringUri", "createdByText"]))


def service_show(args: argparse.Namespace) -> None:
    service = _service(args)
    service.update_deployment_state()
    data = service.serialize()
    _emit(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()))


def service_run(args: argparse.Namespace) -> None:
    data = args.data
    if data is None or data == "-":
        data = sys.stdin.read()
    elif data.startswith("@"):
        data = Path(data[1:]).read_bytes()
    answer = _service(args).run(data)
    if isinstance(answer, bytes):
        sys.stdout.buffer.write(answer)
        return
    print(json.dumps(answer, indent=None if not args.json else 2))


def service_logs(args: argparse.Namespace) -> None:
    print(_service(args).get_logs(num_lines=args.lines))


def service_update(args: argparse.Namespace) -> None:
    service = _service(args)
    image = resolve_image(service.workspace, args.image) if args.image else None
    service.update(image=image, progress=_progress(args), **arguments.update_settings(args))
    _emit(args, service.serialize(), f"Service {service.name} now serves {service.image_id} ({service.state})")


def service_delete(args: argparse.Namespace) -> None:
    service = _service(args)
    service.delete(delete_collected_data=args.delete_collected_data)
    _emit(
        args,
        {"deleted": service.name, "collectedDataKept": service.collected_data_kept},
        service.deleted_summary("--delete-collected-data"),
    )


def service_keys(args: argparse.Namespace) -> None:
    service = _service(args)
    if args.regen:
        service.regen_key(args.regen)
    primary, secondary = service.get_keys()
    _emit(args, {"primary": primary, "secondary": secondary}, f"primary:   {primary}\nsecondary: {secondary}")


def quickstart(args: argparse.Namespace) -> None:
    run_quickstart(args.workdir, workspace=args.workspace, keep=args.keep)


MIGRATE_MAX_BYTES = 64 * 2**20  # a notebook with its outputs; anything larger is not one to rewrite


def migrate(args: argparse.Namespace) -> None:
    """The migration contract's rewrites (migrate.py), one file at a time; what changed, line by line."""
    # here, not at the top: nbformat brings jsonschema, seconds to import, which no other command needs
    from mlmagics.migrate import migrate_file

    if args.output and len(args.files) > 1:
        raise UserError("--output names one file: give one input with it")
    report = []
    for name in args.files:
        if not Path(name).is_file():
            raise UserError(f"{name} does not exist" if not Path(name).exists() else f"{name} is not a file")
        if Path(name).stat().st_size > MIGRATE_MAX_BYTES:
            raise UserError(f"{name} is larger than {MIGRATE_MAX_BYTES // 2**20} MiB: not a notebook or script to migrate")
        try:
            target, migration = migrate_file(name, args.output)
        except Exception as e:  # noqa: BLE001 - a file that is not UTF-8, not a notebook, or cannot be written: one line
            reason = " ".join(str(e).split())[:300] or type(e).__name__
            raise UserError(f"{name} could not be migrated: {reason}") from None
        changes = [{"cell": c, "before": b, "after": a} for c, b, a in migration.changes]
        report.append({"file": name, "written": str(target), "changes": changes, "scripts_left": migration.scripts_left})
        lines = [f"{name} -> {target}: {len(changes)} line(s) changed"]
        lines += [f"  {'cell ' + str(c['cell']) + ': ' if c['cell'] else ''}{c['before'].strip()}  =>  {c['after'].strip()}"
                  for c in changes]  # fmt: skip
        if migration.scripts_left:
            cells = ", ".join(map(str, migration.scripts_left))
            lines.append(f"  left as written (scoring scripts, run inside the service): cell {cells}")
        if not args.json:
            print("\n".join(lines))
    if args.json:
        print(json.dumps(report, indent=2))


# -- the workspace --------------------------------------------------------------------------------------
def workspace_show(args: argparse.Namespace) -> None:
    ws = _workspace(args)
    data = {"workspace": ws.display, "id": ws.identity, "metadata": ws.db.display, "artifacts": ws.artifacts.display,
            "local": str(ws.path), "schema": ws.db.revision()}  # fmt: skip
    _emit(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()))


def workspace_sweep(args: argparse.Namespace) -> None:
    removed = _workspace(args).sweep_artifacts(older_than_s=args.older_than)
    chunks = removed.chunks
    text = f"Removed {len(removed)} artifact(s) no model or image uses and {len(chunks)} chunk(s) no recorded artifact holds"
    _emit(args, {"removed": removed, "chunks": chunks}, text)


# -- parser ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workspace", metavar="DIR|CONFIG",
        help="a workspace folder, or a config file naming a team's stores (default: $MLMAGICS_WORKSPACE, else "
        "$MLMAGICS_HOME, else ~/.mlmagics)",
    )  # fmt: skip
    common.add_argument("--json", action="store_true", help="machine-readable output")
    parser = argparse.ArgumentParser(prog="mlmagics", description="Deploy models as versioned web services.")
    groups = parser.add_subparsers(
        dest="group", required=True, metavar="{model,image,service,workspace,serve,quickstart,migrate}"
    )

    model = groups.add_parser("model", help="register, list, show, download, delete models").add_subparsers(
        dest="command", required=True
    )
    p = model.add_parser("register", parents=[common], help="register a file or folder as the next version of NAME")
    p.add_argument("path")
    p.add_argument("--name", required=True)
    p.add_argument("--tag", action="append", help="key=value (repeatable)")
    p.add_argument("--property", action="append", help="key=value (repeatable)")
    p.add_argument("--description")
    p.set_defaults(func=model_register)
    p = model.add_parser("list", parents=[common])
    p.add_argument("--name")
    p.add_argument("--tag", action="append")
    p.add_argument("--latest", action="store_true")
    p.set_defaults(func=model_list)
    for name, func in (("show", model_show), ("delete", model_delete)):
        p = model.add_parser(name, parents=[common])
        p.add_argument("id", help="NAME:VERSION (or NAME for the latest)")
        p.set_defaults(func=func)
    p = model.add_parser("download", parents=[common])
    p.add_argument("id")
    p.add_argument("--to", default=".")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=model_download)

    image = groups.add_parser("image", help="create, list, show, delete images").add_subparsers(dest="command", required=True)
    p = image.add_parser("create", parents=[common], help="snapshot a script, its models and environment as NAME:next")
    p.add_argument("name")
    p.add_argument("--script", required=True)
    p.add_argument("--model", action="append", help="NAME[:VERSION] (repeatable)")
    p.add_argument("--requirements")
    p.add_argument("--conda-file")
    p.add_argument("--runtime", choices=["python", "spark-py"], default="python")
    p.add_argument("--dependency", action="append", help="extra file or folder next to the script (repeatable)")
    p.add_argument("--tag", action="append")
    p.add_argument("--description")
    p.set_defaults(func=image_create)
    p = image.add_parser("list", parents=[common])
    p.add_argument("--name")
    p.set_defaults(func=image_list)
    for name, func in (("show", image_show), ("delete", image_delete)):
        p = image.add_parser(name, parents=[common])
        p.add_argument("id")
        p.set_defaults(func=func)

    service = groups.add_parser("service", help="deploy and operate services").add_subparsers(dest="command", required=True)
    p = service.add_parser("deploy", parents=[common], help="deploy an image (or models + script) as service NAME")
    p.add_argument("name")
    default = arguments.default_target_name()
    default_help = f"; default {default} ($MLMAGICS_DEFAULT_TARGET)" if default else ""
    p.add_argument("--target", help=f"where to run it: {arguments.target_help()}{default_help}")
    p.add_argument("--no-wait", action="store_true", help="return without waiting for Healthy")
    arguments.add_source_options(p)
    arguments.add_deploy_options(p)
    p.set_defaults(func=service_deploy)
    p = service.add_parser("list", parents=[common])
    p.add_argument("--target", help=f"only services on this target: {arguments.target_help()}")
    p.set_defaults(func=service_list)
    p = service.add_parser("show", parents=[common])
    p.add_argument("name")
    p.set_defaults(func=service_show)
    p = service.add_parser("delete", parents=[common], help="stop and remove a service (the data it collected stays)")
    p.add_argument("name")
    p.add_argument("--delete-collected-data", action="store_true", help="remove the data it collected too")
    p.set_defaults(func=service_delete)
    p = service.add_parser("run", parents=[common], help="score: DATA as JSON text, @FILE, or - for stdin")
    p.add_argument("name")
    p.add_argument("data", nargs="?")
    p.set_defaults(func=service_run)
    p = service.add_parser("logs", parents=[common])
    p.add_argument("name")
    p.add_argument("-n", "--lines", type=arguments.positive_int("--lines"), default=100)
    p.set_defaults(func=service_logs)
    p = service.add_parser("update", parents=[common], help="move a service to another image or settings")
    arguments.add_update_options(p)
    p.set_defaults(func=service_update)
    p = service.add_parser("keys", parents=[common], help="show (or regenerate) the keys")
    p.add_argument("name")
    p.add_argument("--regen", choices=["primary", "secondary"])
    p.set_defaults(func=service_keys)

    workspace = groups.add_parser("workspace", help="the workspace: where it is, and sweeping its shared store")
    commands = workspace.add_subparsers(dest="command", required=True)
    p = commands.add_parser("show", parents=[common], help="the workspace's stores, id and schema revision")
    p.set_defaults(func=workspace_show)
    p = commands.add_parser("sweep", parents=[common], help="remove objects no model or image uses from a shared store")
    p.add_argument("--older-than", type=float, default=3600, metavar="SECONDS",
                   help="only objects at least this old (default 3600: a registration in flight uploads first)")  # fmt: skip
    p.set_defaults(func=workspace_sweep)

    groups.add_parser("serve", help="run the scoring server in the foreground (see mlmagics serve --help)", add_help=False)
    p = groups.add_parser("quickstart", parents=[common], help="train a small model and run the whole flow on the local target")
    p.add_argument(
        "--workdir", default="mlmagics-quickstart", help="folder for the model and script (default ./mlmagics-quickstart)"
    )
    p.add_argument("--keep", action="store_true", help="leave the service running at the end")
    p.set_defaults(func=quickstart)
    p = groups.add_parser("migrate", help="rewrite a v1 notebook's (or .py file's) azureml imports to mlmagics")
    p.add_argument("files", nargs="+", metavar="FILE", help=".ipynb or .py files; each is written to NAME.mlmagics.SUFFIX")
    p.add_argument("-o", "--output", help="where to write the result (one FILE only); may be FILE itself")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve":
        return serve_main(argv[1:], prog="mlmagics serve")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except MlmagicsError as e:
        print(f"mlmagics: error: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mlmagics: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
