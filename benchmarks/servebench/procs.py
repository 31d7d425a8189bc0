"""Start servers in their own process group, stop them for sure, and measure their memory.

Both servers fork workers, so a server is its whole process tree: it is started
with ``start_new_session=True`` and stopped with ``killpg``; memory is summed over
every descendant found in ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Spawned:
    """A started server: its process (the group leader), start time and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    started: float
    log_path: Path

    @property
    def pid(self) -> int:
        """The group leader's pid (= the process group id)."""
        return self.proc.pid

    def exited(self) -> int | None:
        """The exit code if the leader has exited, else None."""
        return self.proc.poll()


def spawn(name: str, cmd: list[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> Spawned:
    """Start ``cmd`` in a new session with stdout+stderr appended to ``log_path``."""
    with log_path.open("ab") as log:
        log.write(f"\n=== serving_bench started {name}: {' '.join(cmd)}\n".encode())
        log.flush()
        started = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Spawned(name=name, proc=proc, started=started, log_path=log_path)


def _proc_stats() -> list[tuple[int, str, int, int]]:
    """(pid, state, ppid, pgrp) for every process in /proc."""
    stats = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in field 2 may hold spaces; the fields after ')' are fixed.
        state, ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        stats.append((int(entry.name), state, int(ppid), int(pgrp)))
    return stats


def group_members(pgid: int) -> list[int]:
    """Pids of live (non-zombie) processes whose process group is ``pgid``."""
    return [pid for pid, state, _, pgrp in _proc_stats() if pgrp == pgid and state != "Z"]


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def stop(spawned: Spawned, grace: float = 10.0) -> None:
    """SIGTERM the server's process group, SIGKILL whatever is left after ``grace`` seconds."""
    pgid = spawned.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        spawned.proc.poll()  # reap the leader so it does not linger as a zombie
        if not group_members(pgid):
            return
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)
    spawned.proc.wait(timeout=5)


class Registry:
    """Every server this run started; ``stop_all`` ends them (also on Ctrl-C or an exception)."""

    def __init__(self) -> None:
        """Start with nothing registered."""
        self._spawned: list[Spawned] = []

    def spawn(
        self,
        name: str,
        cmd: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        log_path: Path,
    ) -> Spawned:
        """Like :func:`spawn`, remembering the server so it is always stopped."""
        spawned = spawn(name, cmd, cwd=cwd, env=env, log_path=log_path)
        self._spawned.append(spawned)
        return spawned

    def stop(self, spawned: Spawned) -> None:
        """Forget one server and stop it."""
        self._spawned.remove(spawned)
        stop(spawned)

    def stop_all(self) -> None:
        """Stop every server still registered, newest first; one failure does not spare the rest."""
        while self._spawned:
            spawned = self._spawned.pop()
            try:
                stop(spawned)
            except (OSError, subprocess.SubprocessError) as err:
                print(
                    f"serving_bench: could not stop {spawned.name} (pgid {spawned.pid}): {err}",
                    file=sys.stderr,
                )

    def __enter__(self) -> Registry:
        """Use as ``with Registry() as servers:``."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop everything on the way out, whatever happened."""
        self.stop_all()


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process in /proc."""
    children: dict[int, list[int]] = {}
    for pid, _, ppid, _ in _proc_stats():
        children.setdefault(ppid, []).append(pid)
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all of its descendants."""
    children = _children_map()
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def _read_kib(path: Path, field: str) -> int:
    """The value in kB of ``field:`` in a /proc status-style file, 0 if absent."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Memory:
    """Memory of a process tree: RSS summed (counts shared pages once per process) and PSS summed."""

    rss_mib: float
    pss_mib: float
    processes: int


def tree_memory(pid: int) -> Memory:
    """Sum VmRSS and Pss over the process tree rooted at ``pid``."""
    pids = process_tree(pid)
    rss = sum(_read_kib(Path(f"/proc/{p}/status"), "VmRSS") for p in pids)
    pss = sum(_read_kib(Path(f"/proc/{p}/smaps_rollup"), "Pss") for p in pids)
    return Memory(rss_mib=rss / 1024, pss_mib=pss / 1024, processes=len(pids))


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
