"""Adaptive batching: one `run()` call for the rows of many concurrent requests.

Opt-in per service (`max_batch_size` rows, `max_batch_latency_ms`). Two kinds of script batch:

- an inference-schema script whose `run()` takes rows — a parameter whose schema is an array (numpy,
  pandas `records`, a list): unchanged. The rows of concurrent requests are concatenated into one JSON list,
  which the schema decorator turns into one array / DataFrame; `run()` is called once and its answer is
  split back by rows (a list, an array, a JSON string of a list, or a dict of such lists, as long as the
  answer has one entry per row). Parameters that are not arrays must be equal to share a call.
- any script whose `run` is decorated with `@batched`: it takes a list of inputs and returns a list of the
  same length (`from mlmagics.serving.batching import batched`, importable in every image).

The dispatcher (on the worker's main thread, where `run()` runs):

- takes requests oldest first (FIFO: nothing starves), counting rows, not requests; a request with more rows
  than `max_batch_size` is served alone, never rejected or cut;
- dispatches at once when nothing else is waiting; it waits for more only while waiting pays: the cost of
  a call is learned as it runs (`fixed + per_row × rows`, like BentoML's linear model), and it waits no longer
  than one call's fixed cost, the oldest request's `max_batch_latency_ms`, and the time the next request is
  expected to take to arrive;
- answers each request on its own: a request whose input is bad gets its own 400; if the batched call fails
  as a whole, the requests are run again one by one, so one bad row fails only its own request; an answer
  that cannot be split by rows is served one by one from then on (said once in the log).
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BATCHED = "__mlmagics_batched__"


def batched(run: Callable | None = None, *, max_batch_size: int | None = None, max_batch_latency_ms: float | None = None):
    """Mark `run` as taking a list of inputs and returning a list of answers, one per input.

        @batched
        def run(inputs):            # ['{"x": 1}', '{"x": 2}', ...]: each request's body, as run() would get it
            return [score(i) for i in inputs]

    `max_batch_size` / `max_batch_latency_ms` here are the script's defaults; each one the service sets wins.
    Unbatched (batching off), the server still calls it with a list of one."""

    def mark(function: Callable) -> Callable:
        setattr(function, BATCHED, {"max_batch_size": max_batch_size, "max_batch_latency_ms": max_batch_latency_ms})
        return function

    return mark(run) if run is not None else mark


@dataclass
class Item:
    """One request in a batch: its job, `run()`'s keyword arguments for it alone, its rows."""

    job: Any
    kwargs: dict[str, Any]
    rows: int
    key: str = ""  # requests share a call only with equal keys (the arguments that are not rows)
    echo: Any = None  # what its protocol's answer needs of the request (protocols.py)
    alone: bool = False  # it cannot share a call (its arguments are not rows of one length): served by itself
    answered: bool = False


class Unsplittable(Exception):
    """The batched answer does not have one entry per row."""


@dataclass
class Plan:
    """How this script's requests merge and split."""

    rows_params: list[str]  # arguments that hold rows (concatenated)
    listwise: bool  # @batched: run() takes a list of whole inputs

    def rows(self, kwargs: dict[str, Any]) -> tuple[int, str] | None:
        """(rows, key) of a request, or None when it cannot share a call (rows of unequal length, not a list)."""
        if self.listwise:
            return 1, ""
        counts = {len(v) if isinstance(v, list) else -1 for name, v in kwargs.items() if name in self.rows_params}
        if len(counts) != 1 or -1 in counts or 0 in counts:
            return None
        others = {k: v for k, v in kwargs.items() if k not in self.rows_params}
        try:
            key = json.dumps(others, sort_keys=True) if others else ""
        except (TypeError, ValueError, RecursionError):
            return None
        return counts.pop(), key

    def merge(self, items: list[Item]) -> dict[str, Any]:
        if self.listwise:
            name = next(iter(items[0].kwargs))
            return {name: [item.kwargs[name] for item in items]}
        merged = dict(items[0].kwargs)
        for name in self.rows_params:
            merged[name] = [row for item in items for row in item.kwargs[name]]
        return merged

    def split(self, value: Any, counts: list[int]) -> list[Any]:
        """The batched answer cut back into one answer per request (Unsplittable if it cannot be)."""
        total = sum(counts)
        if isinstance(value, str):  # v1's `return json.dumps(predictions)`: split the list, encode each part
            try:
                decoded = json.loads(value)
            except (ValueError, RecursionError):
                raise Unsplittable("run() returned a string that is not a JSON list") from None
            return [json.dumps(part) for part in self.split(decoded, counts)]
        if isinstance(value, dict) and value and not self.listwise:
            parts = {k: self.split(v, counts) for k, v in value.items()}
            return [{k: parts[k][i] for k in value} for i in range(len(counts))]
        try:
            length = len(value)
        except TypeError:
            raise Unsplittable(f"run() returned a {type(value).__name__}, not one answer per row") from None
        if length != total:
            raise Unsplittable(f"run() returned {length} answers for {total} rows")
        cut = value.iloc if hasattr(value, "iloc") else value  # a pandas answer is cut by position
        out, start = [], 0
        for n in counts:
            part = cut[start : start + n]
            out.append(part[0] if self.listwise else part)
            start += n
        return out


def plan_for(script: Any) -> tuple[Plan | None, str]:
    """How to batch this script, or (None, why not)."""
    marked = getattr(script.run, BATCHED, None)
    if marked is not None:
        if len(script.params) != 1:
            return None, "@batched run() takes exactly one argument (the list of inputs)"
        return Plan([], listwise=True), ""
    if script.style != "schema":
        return None, "run() is neither inference-schema decorated nor @batched: each request is served alone"
    if script.wants_headers:
        return None, "run() takes request_headers, which differ per request: each request is served alone"
    rows = script.row_params()
    if not rows:
        return None, "no parameter of run()'s input schema holds rows (an array): each request is served alone"
    return Plan(rows, listwise=False), ""


@dataclass
class CostModel:
    """Seconds per call = fixed + per_row × rows, fitted by exponentially weighted least squares."""

    decay: float = 0.95
    n: float = 0.0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    sxy: float = 0.0

    def observe(self, rows: int, seconds: float) -> None:
        d = self.decay
        self.n, self.sx, self.sy = self.n * d + 1, self.sx * d + rows, self.sy * d + seconds
        self.sxx, self.sxy = self.sxx * d + rows * rows, self.sxy * d + rows * seconds

    @property
    def fixed(self) -> float:
        """The part of a call's time that does not grow with its rows (what batching saves per request)."""
        if self.n < 2:
            return 0.0
        spread = self.n * self.sxx - self.sx * self.sx
        if spread <= 1e-12:  # every batch the same size so far: all of its cost counts as fixed
            return max(self.sy / self.n, 0.0)
        per_row = (self.n * self.sxy - self.sx * self.sy) / spread
        return max((self.sy - per_row * self.sx) / self.n, 0.0)


@dataclass
class Batcher:
    plan: Plan
    max_rows: int
    max_wait_s: float
    cost: CostModel = field(default_factory=CostModel)
    gap_s: float = 1.0  # EWMA of the time between requests' arrivals (not their taking: a wait must not feed itself)
    last_arrival: float = 0.0
    carry: Item | None = None  # a request taken that did not fit: it leads the next batch
    splittable: bool = True
    could_send: Callable[[], int] = lambda: 1  # clients that could send a request now (HttpServer.could_send)

    def take(self, item: Item, jobs: queue.SimpleQueue, parse: Callable[[Any], Item | None]) -> tuple[list[Item], bool]:
        """The batch that starts with `item`: requests of the same key, oldest first, up to `max_rows`.
        `parse` turns a claimed job into an Item (None: it was answered already, e.g. bad input).
        Returns (items, stop): stop when the queue's end marker was met."""
        start = time.monotonic()
        self._arrived(item.job.request.received)
        items, rows = [item], item.rows
        if item.alone or item.rows >= self.max_rows or not self.splittable:
            return items, False
        stop = False
        while rows < self.max_rows:
            job = _next(jobs, 0)
            if job is _EMPTY:
                wait = self._worth_waiting(start)
                job = _next(jobs, wait) if wait > 0 else _EMPTY
                if job is _EMPTY:
                    break
            if job is None:
                stop = True
                break
            if not job.claim.acquire(blocking=False) or job.conn.transport is None:
                continue  # refused meanwhile (max_request_wait_time), or its client left
            self._arrived(job.request.received)
            nxt = parse(job)
            if nxt is None:
                continue
            if nxt.alone or nxt.key != item.key or rows + nxt.rows > self.max_rows:
                self.carry = nxt
                break
            items.append(nxt)
            rows += nxt.rows
        return items, stop

    def _arrived(self, received: float) -> None:
        """A request (received at `received`, monotonic) was taken: learn how often requests arrive."""
        if self.last_arrival and received > self.last_arrival:
            self.gap_s = 0.8 * self.gap_s + 0.2 * min(received - self.last_arrival, 1.0)
        self.last_arrival = max(self.last_arrival, received)

    def _worth_waiting(self, start: float) -> float:
        """How long to wait for one more request: only while that saves a call's fixed cost, and only while some
        client could send one — when every open connection awaits its answer, nobody can (clients wait for an answer
        before they send again): waiting then only delays the batch (by hand at 64 connections, one run each: p99
        32.6 ms with that wait, 11 ms with none at all, max_batch_latency_ms 0)."""
        if self.could_send() <= 0:
            return 0.0
        left = self.max_wait_s - (time.monotonic() - start)
        bound = min(left, self.cost.fixed)
        return self.gap_s * 1.5 if self.gap_s * 1.5 <= bound else 0.0


_EMPTY = object()


def _next(jobs: queue.SimpleQueue, wait: float) -> Any:
    try:
        return jobs.get(timeout=wait) if wait > 0 else jobs.get_nowait()
    except queue.Empty:
        return _EMPTY
