"""The `mlmagics` command: the deploy workflow for terminals and CI.

mlmagics serve score.py --model-dir azureml-models   # the scoring server in the foreground
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve":
        from mlmagics.serving.__main__ import main as serve_main

        return serve_main(argv[1:], prog="mlmagics serve")
    print("usage: mlmagics serve SCRIPT [--model-dir DIR] [--port N] [--workers N] [--config FILE]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
