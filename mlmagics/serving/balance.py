"""Spreads a service's connections evenly over its workers.

Every worker accepts on the one listening socket the supervisor bound. Left to the event loop,
the worker that wakes first takes every connection waiting (asyncio and libuv accept until the
queue is empty), so a client that opens its connections at once lands most of them on one
worker: wrk's 64 keep-alive connections split 13/51, 15/49, 25/39 over two workers here. Each
worker then answers its own connections, and the crowded one answers each of them at a fraction
of the rate — that worker's requests are the service's p99.

So the supervisor makes a table shared by all its workers before it forks them (an anonymous
shared mapping, a few integers per seat), and each worker writes into its seat how many
connections it holds and, every second, that it is alive. A worker that holds more than another
accepting worker by more than `SLACK` moves connections to it:

- it stops accepting (it closes its own handle on the listening socket; the socket stays open
  in the other workers, and its seat says "not accepting", so nobody moves connections to it);
- it answers the next requests of its connections with `connection: close`, on as many
  connections as half its lead over the worker holding fewest (counted when it stops accepting: a
  client closed and not yet reconnected is on nobody's count): the clients reconnect, and only the
  other workers accept them;
- once the counts are even, its clients having landed (or after `PAUSE_S` at most: a client may
  take its time to reconnect, and a worker that stopped answering must not leave the port
  without acceptors), it accepts again.

Only a connection with nothing else to answer, nothing arriving and reading not paused is moved,
so a client that does not pipeline loses nothing (it reads `connection: close` before it sends
again); and only one that has answered two requests or more, so a client that opens a connection
per request (saying `keep-alive` or not) is never moved, and its churn never stops a worker
accepting. The workers of a reload's new generation count only once the supervisor switched to
them (should one fail to start, they are all killed: no client must have been moved to them).
A worker whose loop is stuck (stopped, or hung in C code holding the GIL) stops saying it is
alive: after `STALE_S` (to `STALE_S` + 1 s) its peers leave it out; until then, a peer moving
connections to it waits at most `PAUSE_S` before accepting again (the connections wait in the
socket's queue, none is lost). A loop that stalls again and again for less than that keeps being
counted, and costs its peers a pause now and then.

Balancing runs on uvloop only: asyncio's own loop attaches an accepted connection to its server a
moment after accepting it, and a server closed in between (a pause) would drop it.

Without the pause, a moved client mostly reconnected to the worker that had just closed it (the
one awake), and a third of the test runs had not evened out after ten rounds. Accepting stays the
event loop's own (libuv's accept, in C): a worker that accepted in Python, one connection at a
time, evened out a burst at once but cost a fifth of the throughput with clients that connect
for every request (each accept took the GIL for one more round of the loop).

A lone worker has no seat, and neither have workers that cannot run at once (one CPU, by affinity
or by a container's CPU quota): there, one worker holding every connection is what answers
fastest — two workers taking turns on one CPU preempt each other mid-batch (by hand, 64
connections: p99 16 ms with one worker, 23 ms with two; the batching bench's 8 connections with
batching off: 0.78× the throughput with the connections spread).
"""

from __future__ import annotations

import math
import mmap
import os
import time

SEATS = 256  # workers of two generations at once (a reload); a worker beyond that accepts unbalanced
SLACK = 1  # a worker moves a connection to another only when that one holds more than this many fewer
PAUSE_S = 0.5  # the longest a worker moving connections stops accepting
STALE_S = 3  # a worker that has not said it is alive for this long is left out (its loop is stuck)


def parallel_cpus() -> int:
    """How many CPUs this process can run on at once: its CPU affinity, capped by the cgroup v2 CPU quotas
    (`cpu.max`) of its cgroup and every cgroup above it — a container's CPU limit, or systemd's CPUQuota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1
    for folder in _cgroup_folders():
        try:
            with open(os.path.join(folder, "cpu.max"), encoding="ascii") as f:
                quota, period = f.read().split()[:2]
            if quota != "max":
                cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
        except (OSError, ValueError):
            continue
    return cpus


def _cgroup_folders(root: str = "/sys/fs/cgroup", membership: str = "/proc/self/cgroup") -> list[str]:
    """This process's cgroup v2 folder and those above it, up to the root (what `membership` names)."""
    try:
        with open(membership, encoding="utf-8") as f:
            path = next((line.split(":", 2)[2].strip() for line in f if line.startswith("0::")), "/")
    except (OSError, IndexError):
        path = "/"
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    return [os.path.join(root, *parts[:depth]) for depth in range(len(parts), -1, -1)]


def _now() -> int:
    return int(time.monotonic())  # CLOCK_MONOTONIC: one clock for every process of this machine


class Table:
    """The shared table: three arrays of `seats` + 1 integers, seat i at index i.

    - held[i]: 1 + the connections of the worker in seat i; 0 when nobody sits there or its worker does not accept
      (starting, moving connections, draining, gone). held[0]: one past the highest seat taken so far.
    - alive[i]: when its worker last said it was alive (monotonic seconds, so "stale" is STALE_S to STALE_S + 1 s).
    - generation[i]: the generation its worker belongs to; generation[0]: the one serving. The workers of a
      reload's new generation are not counted until the supervisor switches to them (if one fails to start they
      are all killed: no client must have been moved to them).
    """

    def __init__(self, seats: int = SEATS) -> None:
        self._map = mmap.mmap(-1, 3 * (seats + 1) * 4)  # anonymous and shared: forked workers see one table
        cells = memoryview(self._map).cast("i")
        n = seats + 1
        self._held, self._alive, self._generation = cells[:n], cells[n : 2 * n], cells[2 * n :]
        self._taken: set[int] = set()

    def take(self, generation: int = 0) -> Seat | None:
        """A free seat for a worker of `generation` about to be forked (the supervisor calls this), or None when all
        are taken."""
        held = self._held
        free = next((i for i in range(1, len(held)) if i not in self._taken), None)
        if free is None:
            return None
        self._taken.add(free)
        held[free], self._generation[free] = 0, generation
        held[0] = max(held[0], free + 1)
        return Seat((held, self._alive, self._generation), free)

    def free(self, seat: Seat | None) -> None:
        """The worker sitting there exited, or was never started (the supervisor calls this)."""
        if seat is not None:
            self._held[seat.index] = 0
            self._taken.discard(seat.index)

    def serve(self, generation: int) -> None:
        """The workers of `generation` serve now (the supervisor switched to them)."""
        self._generation[0] = generation


class Seat:
    """One worker's seat in the table (used in the worker, from its event loop's thread)."""

    def __init__(self, arrays: tuple[memoryview, memoryview, memoryview], index: int) -> None:
        self._held, self._alive, self._generation = arrays
        self.index = index

    def hold(self, connections: int) -> None:
        """This worker accepts and holds `connections` open connections."""
        self._held[self.index] = connections + 1
        self._alive[self.index] = _now()

    def leave(self) -> None:
        """This worker accepts no more (for now)."""
        self._held[self.index] = 0

    def beat(self) -> None:
        """This worker's loop runs (called every second)."""
        self._alive[self.index] = _now()

    def _peers(self) -> list[int]:
        """The connections of every other accepting, live worker of the serving generation; none when this
        worker's own generation does not serve (yet, or any more)."""
        held, alive, generation = self._held, self._alive, self._generation
        serving = generation[0]
        if generation[self.index] != serving:
            return []
        oldest, end = _now() - STALE_S, held[0]
        seats = zip(range(1, end), held[1:end].tolist(), alive[1:end].tolist(), generation[1:end].tolist(), strict=True)
        return [count - 1 for i, count, seen, gen in seats if i != self.index and count and seen >= oldest and gen == serving]

    def others_accept(self) -> bool:
        """Whether another worker takes new connections now (else this one must not stop accepting)."""
        return bool(self._peers())

    def excess(self, connections: int) -> int:
        """How many of its `connections` this worker should move: half its lead over the accepting, live worker
        holding fewest, when that lead is more than SLACK (a connection or two either way is churn, not worth a
        move); else 0."""
        lead = connections - min(self._peers(), default=connections)
        return lead // 2 if lead > SLACK else 0
