"""Start servers in their own process group, stop them for sure, pin them, and measure their memory.

Both servers fork workers, so a server is its whole process tree: it is started
with ``start_new_session=True`` and stopped with ``killpg``; memory is summed over
every descendant found in ``/proc``. Pinning runs a command under ``taskset -c``;
forked workers inherit the CPU set.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pinning:
    """CPU lists for ``taskset -c``: wrk on one CPU, the servers on others; None means unpinned."""

    wrk_cpus: str | None
    server_cpus: str | None
    description: str

    @staticmethod
    def _prefix(cpus: str | None) -> list[str]:
        return ["taskset", "-c", cpus] if cpus else []

    @property
    def wrk(self) -> list[str]:
        """Command prefix for wrk."""
        return self._prefix(self.wrk_cpus)

    @property
    def server(self) -> list[str]:
        """Command prefix for a server (and the in-process loop, so it runs on the same CPU)."""
        return self._prefix(self.server_cpus)


def plan_pinning(enabled: bool, workers: int) -> Pinning:
    """wrk on the first CPU this process may use, the servers on the next ``workers`` (at least one).

    Off with ``enabled=False`` or fewer than 2 usable CPUs; with N workers and fewer
    than N + 1 CPUs the workers share the CPUs left after wrk's.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled:
        return Pinning(None, None, "off (--no-pin); wrk and the server share every CPU")
    if len(cpus) < 2:
        return Pinning(None, None, f"off: only {len(cpus)} CPU; wrk and the server share it")
    server = ",".join(str(cpu) for cpu in cpus[1 : 1 + workers])
    return Pinning(
        str(cpus[0]),
        server,
        f"wrk under `taskset -c {cpus[0]}`, each server's process tree (and the in-process loop) under `taskset -c {server}`",
    )


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


_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds so far: the machine (busy, and stolen by the hypervisor), a server tree, reaped children, us."""

    machine_busy: float
    steal: float
    server: float
    children: float
    own: float


@dataclass(frozen=True)
class Interference:
    """CPUs' worth of work that was not the benchmark's during a run (0.25 = a quarter of one CPU)."""

    other: float
    steal: float


def _machine_cpu_s() -> tuple[float, float]:
    """(non-idle, stolen) CPU seconds summed over every CPU since boot, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq) * _TICK_S, steal * _TICK_S


def _tree_cpu_s(pid: int) -> float:
    """utime + stime of every live process in the tree rooted at ``pid``."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total * _TICK_S


def cpu_snapshot(server_pid: int) -> CpuSnapshot:
    """Take a snapshot; compare two with :func:`interference`."""
    children, own = (resource.getrusage(who) for who in (resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF))
    busy, steal = _machine_cpu_s()
    return CpuSnapshot(
        machine_busy=busy,
        steal=steal,
        server=_tree_cpu_s(server_pid),
        children=children.ru_utime + children.ru_stime,
        own=own.ru_utime + own.ru_stime,
    )


def interference(before: CpuSnapshot, after: CpuSnapshot, wall_s: float) -> Interference:
    """Other processes' CPU between two snapshots, and CPU the hypervisor stole, per second of ``wall_s``.

    "Other" is everything the machine did minus the server tree, the reaped
    children (wrk) and this process; kernel work done for them in interrupt
    context (softirqs) lands there too, so a few percent is normal.
    """
    ours = sum(getattr(after, f) - getattr(before, f) for f in ("server", "children", "own"))
    other = (after.machine_busy - before.machine_busy - ours) / wall_s
    return Interference(other=max(0.0, other), steal=(after.steal - before.steal) / wall_s)


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
