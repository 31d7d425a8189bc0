"""One request's path through the scoring runtime, in one process, for counting instructions (callgrind).

    python pathcost.py SCRIPT N        # N POST /score requests with the 1-row body, answered in full

Every step a request takes in a worker, without a socket: httptools parses it (Connection.data_received),
the app admits and queues it, the scorer runs `run()` (the same `serve()` loop, fed one job at a time) and
the event loop writes the answer to a transport that keeps nothing. Run under `valgrind --tool=callgrind`
for N and for a smaller N, the difference divided by the difference in N is the instructions one request
costs — a count that does not drift with the machine's load, unlike req/s on a shared VM. It works with
the runtime before and after the hardening (their constructors differ), so both can be counted alike.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys


class NullTransport(asyncio.Transport):
    """What the connection writes to: counts, keeps nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data) -> None:
        self.written += len(data)

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


def main(script: str, count: int) -> None:
    from mlmagics.serving import app as app_module
    from mlmagics.serving import http
    from mlmagics.serving.metrics import Metrics
    from mlmagics.serving.scorer import Scorer
    from mlmagics.serving.script import ScoringScript
    from mlmagics.serving.settings import resolve

    settings = resolve({"entry_script": script, "auth_enabled": True, "primary_key": "k", "max_request_wait_time": 500},
                       environ={})  # fmt: skip
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    metrics = Metrics(False)
    scorer = Scorer(ScoringScript(script), settings.scoring_timeout_ms, settings.max_request_wait_time, "bench", metrics)
    scorer.loop = loop
    scorer.start()
    app = app_module.App(settings, scorer, metrics)
    takes_settings = "settings" in inspect.signature(http.HttpServer).parameters
    server = http.HttpServer(app, settings) if takes_settings else http.HttpServer(app)
    conn = http.Connection(server)
    transport = NullTransport()
    conn.connection_made(transport)
    body = json.dumps({"data": [[1.0] * 64]}).encode()
    request = (
        b"POST /score HTTP/1.1\r\nHost: 127.0.0.1:5001\r\nAuthorization: Bearer k\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    for _ in range(count):
        conn.data_received(request)
        scorer.jobs.put(None)
        scorer.serve()  # runs the job, then returns at the None
        loop.run_until_complete(asyncio.sleep(0))  # the event loop delivers the answer
    assert transport.written > 0 and not conn.pending, "every request was answered"
    print(json.dumps({"requests": count, "bytes_written": transport.written}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
