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
- it answers its next idle connections with `connection: close`, as many as half its lead over
  the worker holding fewest (counted when it stops accepting: a client closed and not yet
  reconnected is on nobody's count): the clients reconnect, and only the other workers accept them;
- once the counts are even, its clients having landed (or after `PAUSE_S` at most: a client may
  take its time to reconnect, and a worker that stopped answering must not leave the port
  without acceptors), it accepts again.

Only a connection with nothing else to answer and nothing arriving is moved, so a client that
does not pipeline loses nothing (it reads `connection: close` before it sends again), and only
keep-alive connections are: a client that closes after every answer is never affected. A worker
whose loop is stuck (stopped, or hung in C code holding the GIL) stops saying it is alive: after
`STALE_S` its peers leave it out; until then, a peer moving connections to it waits at most
`PAUSE_S` before accepting again (the connections wait in the socket's queue, none is lost).

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
    """How many CPUs this process can run on at once: its CPU affinity, capped by a cgroup v2 CPU quota
    (`cpu.max`, a container's CPU limit)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def _now() -> int:
    return int(time.monotonic())  # CLOCK_MONOTONIC: one clock for every process of this machine


class Table:
    """The shared table, three arrays of `seats` + 1 integers. held[0]: one past the highest seat taken so far (what a
    worker reads); held[i]: 1 + the connections of the worker in seat i, 0 when nobody sits there or its worker does
    not accept (starting, moving connections, draining, gone); alive[i]: when it last said it was alive (monotonic
    seconds)."""

    def __init__(self, seats: int = SEATS) -> None:
        self._map = mmap.mmap(-1, 2 * (seats + 1) * 4)  # anonymous and shared: forked workers see one table
        cells = memoryview(self._map).cast("i")
        self._held, self._alive = cells[: seats + 1], cells[seats + 1 :]
        self._taken: set[int] = set()

    def take(self) -> Seat | None:
        """A free seat for a worker about to be forked (the supervisor calls this), or None when all are taken."""
        free = next((i for i in range(1, len(self._held)) if i not in self._taken), None)
        if free is None:
            return None
        self._taken.add(free)
        self._held[free] = 0
        self._held[0] = max(self._held[0], free + 1)
        return Seat(self._held, self._alive, free)

    def free(self, seat: Seat | None) -> None:
        """The worker sitting there exited (the supervisor calls this)."""
        if seat is not None:
            self._held[seat.index] = 0
            self._taken.discard(seat.index)


class Seat:
    """One worker's seat in the table (used in the worker, from its event loop's thread)."""

    def __init__(self, held: memoryview, alive: memoryview, index: int) -> None:
        self._held, self._alive = held, alive
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

    def excess(self, connections: int) -> int:
        """How many of its `connections` this worker should move: half its lead over the accepting, live worker
        holding fewest, when that lead is more than SLACK (a connection or two either way is churn, from clients
        that close after each request, not worth a move); else 0."""
        held, alive = self._held, self._alive
        oldest, end = _now() - STALE_S, held[0]
        seats = zip(held[1:end].tolist(), alive[1:end].tolist(), strict=True)
        fewest = min((count - 1 for count, seen in seats if count and seen >= oldest), default=connections)
        lead = connections - fewest
        return lead // 2 if lead > SLACK else 0
