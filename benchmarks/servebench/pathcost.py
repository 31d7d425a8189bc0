"""One request's path through the scoring runtime, in one process, for counting instructions (callgrind).

    python pathcost.py SCRIPT N                      # N POST /score requests with a 1-row body, one at a time
    python pathcost.py SCRIPT N --conns 64 --rows 1 --batch-rows 64 --batch-latency-ms 10

Every step a request takes in a worker, without a socket: httptools parses it (Connection.data_received),
the app admits and queues it, the scorer runs `run()` (the same `serve()` loop) and the event loop writes
the answer to a transport that keeps nothing. With `--conns C`, C connections each send a request, the
scorer serves the C queued jobs (one at a time, or in batches when `--batch-rows` turns batching on), the
loop delivers the C answers, and so on: N is rounded down to whole rounds. Run under
`valgrind --tool=callgrind` for N and for a smaller N, the difference divided by the difference in N is
the instructions one request costs — a count that does not drift with the machine's load, unlike req/s on a
shared VM. It works with the runtimes before the hardening and before batching (their constructors differ),
so every runtime can be counted alike.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
from collections import Counter


class NullTransport(asyncio.Transport):
    """What the connection writes to: counts, keeps nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.answers: Counter[bytes] = Counter()  # by status, from each answer's status line

    def write(self, data) -> None:
        self.written += len(data)
        if data.startswith(b"HTTP/1.1 "):
            self.answers[bytes(data[9:12])] += 1

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 5001)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        pass


def main(script: str, count: int, conns: int = 1, rows: int = 1, batch_rows: int = 0, batch_latency_ms: float = 10.0) -> None:
    from mlmagics.serving import app as app_module
    from mlmagics.serving import http
    from mlmagics.serving.logs import log
    from mlmagics.serving.metrics import Metrics
    from mlmagics.serving.scorer import Scorer
    from mlmagics.serving.script import ScoringScript
    from mlmagics.serving.settings import resolve

    settings = resolve({"entry_script": script, "auth_enabled": True, "primary_key": "k", "max_request_wait_time": 500},
                       environ={})  # fmt: skip
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    metrics = Metrics(False)
    batching = (batch_rows, batch_latency_ms) if batch_rows else ()  # only this checkout's Scorer takes them
    scorer = Scorer(ScoringScript(script), settings.scoring_timeout_ms, settings.max_request_wait_time, "bench", metrics,
                    *batching)  # fmt: skip
    scorer.loop = loop
    scorer.start()
    app = app_module.App(settings, scorer, metrics)
    takes_settings = "settings" in inspect.signature(http.HttpServer).parameters
    server = http.HttpServer(app, settings) if takes_settings else http.HttpServer(app)
    if hasattr(scorer, "could_send"):
        scorer.could_send = server.could_send  # as the worker wires it: the batcher waits only while clients can send
    transports = [NullTransport() for _ in range(conns)]
    connections = [http.Connection(server) for _ in range(conns)]
    for conn, transport in zip(connections, transports, strict=True):
        conn.connection_made(transport)
    body = json.dumps({"data": [[1.0] * 64] * rows}).encode()
    request = (
        b"POST /score HTTP/1.1\r\nHost: 127.0.0.1:5001\r\nAuthorization: Bearer k\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    rounds = count // conns
    for _ in range(rounds):
        for conn in connections:
            conn.data_received(request)
        scorer.jobs.put(None)
        scorer.serve()  # runs the queued jobs, then returns at the None
        loop.run_until_complete(asyncio.sleep(0))  # the event loop delivers the answers
    # The access lines: the runtime before 4e7f947 wrote each at once; since, they wait in a list for a flusher thread
    # (every 50 ms) that this process does not start. Written here, once, as a flusher would in a few writes: the
    # count includes joining and encoding them, in every runtime.
    log.flush()
    answers = sum((t.answers for t in transports), Counter())
    if answers != Counter({b"200": rounds * conns}) or any(c.pending for c in connections):
        # a count of error answers (a script that failed to load answers 503) must not pass for the scoring path
        raise SystemExit(f"pathcost: expected {rounds * conns} answers of 200, got {dict(answers)}")
    print(json.dumps({"requests": rounds * conns, "bytes_written": sum(t.written for t in transports)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("script")
    parser.add_argument("count", type=int)
    parser.add_argument("--conns", type=int, default=1, help="connections, each with one request in flight")
    parser.add_argument("--rows", type=int, default=1, help="rows per request body")
    parser.add_argument("--batch-rows", type=int, default=0, help="max_batch_size (0: batching off)")
    parser.add_argument("--batch-latency-ms", type=float, default=10.0, help="max_batch_latency_ms")
    a = parser.parse_args()
    if not 1 <= a.conns <= a.count <= 20_000 or not 1 <= a.rows <= 10_000 or a.batch_rows < 0 or a.batch_latency_ms < 0:
        parser.error("need 1 <= --conns <= count <= 20000, 1 <= --rows <= 10000, --batch-rows >= 0, --batch-latency-ms >= 0")
    main(a.script, a.count, a.conns, a.rows, a.batch_rows, a.batch_latency_ms)
