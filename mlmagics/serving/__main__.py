"""`python -m mlmagics.serving score.py --model-dir DIR` (also `mlmagics serve ...`)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .listener import ListenerUnavailable
from .settings import SettingsError, resolve
from .supervisor import PortInUse, serve


def parser(prog: str = "python -m mlmagics.serving") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Serve an Azure ML v1 style score.py (init() + run()) over HTTP.")
    p.add_argument(
        "entry_script", nargs="?", help="the scoring script (default: $AZUREML_ENTRY_SCRIPT, else main.py in the app root)"
    )
    p.add_argument("--model-dir", help="folder holding the model(s) (sets AZUREML_MODEL_DIR)")
    p.add_argument("--port", type=int, help="port to listen on (default 5001)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 inside a container)")
    p.add_argument(
        "--health-port",
        type=int,
        help="also answer GET / and GET /ready, and nothing else, on this port "
        "(v1: HEALTH_PORT with SEPERATE_HEALTH_ENDPOINT=true, whose default is 5000)",
    )
    p.add_argument("--ssl-cert", help="serve HTTPS with this PEM certificate (chain); needs --ssl-key")
    p.add_argument("--ssl-key", help="the PEM private key of --ssl-cert")
    p.add_argument(
        "--listen-from",
        metavar="SOCKET",
        help="accept on the listening socket a holder hands over at this Unix socket instead of binding "
        "--host/--port (how a Docker service keeps its port across updates; see listener.py)",
    )
    p.add_argument("--workers", type=int, help="worker processes, each runs init() once (default 1)")
    p.add_argument("--config", help="service settings as JSON (keys, timeouts, CORS, data collection ...)")
    p.add_argument("--app-root", help="working directory of the script (default: the current directory)")
    p.add_argument("--log-format", choices=["json", "text"], help="log line format (default json)")
    p.add_argument(
        "--log-file",
        help="write the log (and stdout/stderr) to this file instead of stdout, rotated by size "
        "(log_max_bytes, default 10 MiB; log_backups, default 5)",
    )
    p.add_argument(
        "--state-file",
        help="keep a JSON description of the running server here; SIGHUP then reloads "
        "the server from the request in STATE_FILE.reload (used by deploy targets)",
    )
    return p


def main(argv: list[str] | None = None, prog: str = "python -m mlmagics.serving") -> int:
    args = parser(prog).parse_args(argv)
    cli = {
        "entry_script": args.entry_script,
        "model_dir": args.model_dir,
        "port": args.port,
        "host": args.host,
        "health_port": args.health_port,
        "ssl_cert_file": args.ssl_cert,
        "ssl_key_file": args.ssl_key,
        "listen_from": args.listen_from,
        "workers": args.workers,
        "app_root": args.app_root,
        "log_format": args.log_format,
        "log_file": args.log_file,
    }
    environ = dict(os.environ)
    try:
        settings = resolve(cli, environ=environ, config_file=args.config)
        return serve(settings, _reload_source(args.state_file, environ, cli, args.config), args.state_file or "")
    except (SettingsError, PortInUse, ListenerUnavailable) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


def _reload_source(state_file: str | None, environ: dict[str, str], cli: dict, config: str | None):
    """Reads `<state file>.reload`: {"entry_script", "model_dir", "app_root", "config", ...};
    what it does not say stays as the command line said."""
    if not state_file:
        return None

    def load():
        try:
            with open(state_file + ".reload", encoding="utf-8") as f:
                request = json.load(f)
        except (OSError, ValueError) as e:
            raise SettingsError(f"cannot read the reload request {state_file}.reload: {e}") from None
        config_file = request.pop("config", config)
        return resolve({**cli, **request}, environ=environ, config_file=config_file)

    return load


if __name__ == "__main__":
    sys.exit(main())
