"""A health check for container engines: exit 0 when the server is ready, 1 (with the reason) when not.

    python -m mlmagics.serving.health /tmp/mlmagics-state.json      # an image's HEALTHCHECK

With the server's state file (`--state-file`) it checks what the server says of itself:
the main process is alive and every worker of the current generation finished `init()`.
That works wherever the server accepts, even on a socket handed over by a holder in
another container (listener.py), where no port answers inside this container. Without a
state file it asks `GET /ready` on 127.0.0.1:5001 (or the URL given).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request


def check(state_file: str, url: str = "http://127.0.0.1:5001/ready") -> tuple[bool, str]:
    """(healthy, reason)."""
    if state_file and os.path.exists(state_file):
        try:
            with open(state_file, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError) as e:
            return False, f"cannot read {state_file}: {e}"
        try:
            os.kill(int(state["pid"]), 0)
        except (KeyError, ValueError, ProcessLookupError):
            return False, "the server process is gone"
        except PermissionError:
            pass
        if state.get("init_failure"):
            return False, f"init() failed: {state['init_failure'].get('message')}"
        workers = state.get("workers") or {}
        if state.get("stopping") or not workers or any(w != "ready" for w in workers.values()):
            return False, f"workers not ready: {workers}"
        return True, "ready"
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return answer.status == 200, f"{url}: {answer.status}"
    except (urllib.error.URLError, OSError) as e:
        return False, f"{url}: {e}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    healthy, reason = check(args[0] if args else "", *args[1:2])
    print(reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
