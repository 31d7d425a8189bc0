"""`AZUREML_DEBUG_PORT`: attach a debugger before the script loads, as v1 does.

Start your IDE's "listen" debug configuration (VS Code: `"request": "attach", "listen": {"port": 5678}`),
then the server with `AZUREML_DEBUG_PORT=5678` (or `host:port`): each worker connects to it with
`debugpy.connect` and waits until the IDE is ready before importing the script, so breakpoints in
`init()` and `run()` hit. Debug with one worker; never set it in production.
"""

from __future__ import annotations

from .logs import log
from .script import ScriptError


def address(value: str) -> tuple[str, int]:
    """`5678` or `host:5678` -> (host, port); raises ValueError on anything else."""
    host, _, port = value.strip().rpartition(":")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {number} is out of range")
    return host or "127.0.0.1", number


def wait_for_debugger(value: str) -> None:
    """Connect to the debugger listening at `value` and wait for it; a ScriptError says what to do if not."""
    try:
        import debugpy
    except ImportError:
        raise ScriptError(
            "AZUREML_DEBUG_PORT is set but debugpy is not installed: add debugpy to the environment, or unset AZUREML_DEBUG_PORT"
        ) from None
    host, port = address(value)
    log.warning(
        "server",
        f"AZUREML_DEBUG_PORT is set: connecting to the debugger at {host}:{port}; init() waits for it "
        "(never set it in production)",
    )
    log.flush()
    try:
        debugpy.connect((host, port))
    except Exception as e:  # noqa: BLE001 - any failure to connect has one remedy
        raise ScriptError(
            f"cannot connect to the debugger at {host}:{port} (AZUREML_DEBUG_PORT): {e}. "
            "Start the IDE's listening debug configuration first."
        ) from None
    debugpy.wait_for_client()
    log.info("server", "debugger attached")
