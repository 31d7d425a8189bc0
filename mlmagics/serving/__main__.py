"""`python -m mlmagics.serving score.py --model-dir DIR` (also `mlmagics serve ...`)."""

from __future__ import annotations

import argparse
import sys

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
    p.add_argument("--workers", type=int, help="worker processes, each runs init() once (default 1)")
    p.add_argument("--config", help="service settings as JSON (keys, timeouts, CORS, data collection ...)")
    p.add_argument("--app-root", help="working directory of the script (default: the current directory)")
    p.add_argument("--log-format", choices=["json", "text"], help="log line format (default json)")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m mlmagics.serving") -> int:
    args = parser(prog).parse_args(argv)
    cli = {
        "entry_script": args.entry_script,
        "model_dir": args.model_dir,
        "port": args.port,
        "host": args.host,
        "workers": args.workers,
        "app_root": args.app_root,
        "log_format": args.log_format,
    }
    try:
        settings = resolve(cli, config_file=args.config)
        return serve(settings)
    except (SettingsError, PortInUse) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
