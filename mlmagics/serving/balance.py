"""Spreads a service's connections evenly over its workers.

Every worker accepts on the one listening socket the supervisor bound. Left to the event loop,
the worker that wakes first takes every connection waiting (asyncio and libuv accept until the
queue is empty), so a client that opens its connections at once lands most of them on one
worker: wrk's 64 keep-alive connections split 13/51, 15/49, 25/39 over two workers here. Each
worker then answers its own connections, and the crowded one answers each of them at a fraction
of the rate — that worker's requests are the service's p99.

So the supervisor makes a table shared by all its workers before it forks them (an anonymous
shared mapping, one integer per seat), and each worker writes how many connections it holds into
its seat. A worker that holds more than another by more than `SLACK` answers its next idle
connection with `connection: close`: the client reconnects, and the connection lands on either
worker. Moving stops once the counts are even; a burst of 64 evens out within a few requests
per connection. Only a connection with nothing else to answer and nothing arriving is moved, so a
client that does not pipeline loses nothing (it reads `connection: close` before it sends again).

Accepting stays the event loop's own (libuv's accept, in C): a worker that accepted in Python,
one connection at a time, leaving each to a less busy worker for a moment, evened out a burst at
once but cost a fifth of the throughput with clients that connect for every request (each accept
took the GIL for one more round of the loop, behind the scoring thread).
A lone worker has no seat.
"""

from __future__ import annotations

import mmap

SEATS = 256  # workers of two generations at once (a reload); a worker beyond that accepts unbalanced
SLACK = 1  # a worker moves a connection to another only when that one holds more than this many fewer


class Table:
    """The shared table. Cell 0: one past the highest seat taken so far (what a worker reads);
    cell i > 0: 1 + the connections of the worker sitting in seat i, 0 when nobody sits there or
    its worker does not accept (starting, draining, gone)."""

    def __init__(self, seats: int = SEATS) -> None:
        self._map = mmap.mmap(-1, (seats + 1) * 4)  # anonymous and shared: forked workers see one table
        self._cells = memoryview(self._map).cast("i")
        self._taken: set[int] = set()

    def take(self) -> Seat | None:
        """A free seat for a worker about to be forked (the supervisor calls this), or None when all are taken."""
        free = next((i for i in range(1, len(self._cells)) if i not in self._taken), None)
        if free is None:
            return None
        self._taken.add(free)
        self._cells[free] = 0
        self._cells[0] = max(self._cells[0], free + 1)
        return Seat(self._cells, free)

    def free(self, seat: Seat | None) -> None:
        """The worker sitting there exited (the supervisor calls this)."""
        if seat is not None:
            self._cells[seat.index] = 0
            self._taken.discard(seat.index)


class Seat:
    """One worker's seat in the table (used in the worker, from its event loop's thread)."""

    def __init__(self, cells: memoryview, index: int) -> None:
        self._cells = cells
        self.index = index

    def hold(self, connections: int) -> None:
        """This worker accepts and holds `connections` open connections."""
        self._cells[self.index] = connections + 1

    def leave(self) -> None:
        """This worker accepts no more."""
        self._cells[self.index] = 0

    def others_hold_fewer(self, connections: int) -> bool:
        """Whether another accepting worker holds more than SLACK connections fewer than `connections`: a
        connection or two either way is churn (clients that close after each request), not worth a wait."""
        cells = self._cells
        mine = connections + 1 - SLACK
        return any(0 < held < mine for held in cells[1 : cells[0]].tolist())
