"""A listening socket that outlives the servers accepting on it: how a service keeps its address across updates.

A tiny holder process binds the port once and hands the socket, over a Unix socket
(SCM_RIGHTS), to every server that asks. The servers of the old and of the new version
then accept on the very same socket: while the new one runs `init()` the old one takes
every connection; once the new one is ready the old one stops accepting and drains. The
address never changes and no connection is refused or lost in between — the same
hand-over as a SIGHUP reload (supervisor.py), but between two containers built from
different images. The Docker target runs the holder in a small container that owns the
published port (core/targets/docker/):

    python3 listener.py hold --host 0.0.0.0 --port 5001 --socket /run/mlmagics/listener.sock
    python -m mlmagics.serving score.py --listen-from /run/mlmagics/listener.sock

This file uses only the standard library and stands alone, so the holder runs on any
image with a Python 3.9+ (`python3 -c "$(cat listener.py)" hold ...`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time


class ListenerUnavailable(Exception):
    """No holder handed a listening socket over in time."""


def hold(host: str, port: int, path: str) -> None:
    """Bind host:port and give the listening socket to whoever connects to the Unix socket at `path` (mode 0600:
    processes of this user only); runs until SIGTERM."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    listener = socket.create_server((host, port), backlog=2048)
    if os.path.exists(path):  # a previous holder's socket file (after a restart)
        os.unlink(path)
    handout = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Whoever may connect gets the listening socket, so only the holder's own user may: the servers run as
    # that user (the Docker target runs both as the image's uid). The umask makes the file 0600 from the
    # moment it exists, with no window in which another user could connect.
    previous = os.umask(0o177)
    try:
        handout.bind(path)
    finally:
        os.umask(previous)
    handout.listen(16)
    print(json.dumps({"message": f"holding {host}:{port} for the servers that ask at {path}"}), flush=True)
    while True:
        conn, _ = handout.accept()
        with conn:
            try:
                socket.send_fds(conn, [b"L"], [listener.fileno()])
            except OSError:  # the asking server went away; the next one will ask again
                pass


def receive(path: str, timeout: float = 60.0) -> socket.socket:
    """The listening socket the holder at `path` hands over; waits up to `timeout` s for the holder to start."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(5)
                conn.connect(path)
                _, fds, _, _ = socket.recv_fds(conn, 1, 1)
            if fds:
                sock = socket.socket(fileno=fds[0])
                sock.set_inheritable(True)
                return sock
            reason = "the holder answered without a socket"
        except OSError as e:
            reason = str(e)
        if time.monotonic() >= deadline:
            raise ListenerUnavailable(f"no listening socket handed over at {path} within {timeout:.0f} s ({reason})")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Hold a listening socket and hand it to scoring servers.")
    parser.add_argument("command", choices=["hold"])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--socket", default="/run/mlmagics/listener.sock")
    args = parser.parse_args(argv)
    hold(args.host, args.port, args.socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
