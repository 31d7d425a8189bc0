"""The in-process ``run()`` loop of one process for the schema script; runs in the mlmagics venv.

Imports ``score.py`` the way a server does (``servebench.fixture.import_score``), calls ``init()``
once, then for each body calls ``run(**json.loads(body))`` in a tight loop
(``servebench.fixture.run_loop``): the JSON decoding, inference-schema's conversion to numpy and
the prediction, which every server must do too — no HTTP. Prints one JSON object:
``{"<rows>": {"calls_per_s": .., "rows_per_s": .., "answer": [...]}}``.

Example::

    benchmarks/.venv-mlmagics/bin/python benchmarks/batchbench/inproc.py --app app.json --seconds 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for servebench

from servebench.fixture import import_score, run_loop  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Measure each body's calls/s and print them with the answers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", type=Path, required=True, help="JSON written by the driver (apps.write_apps)")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    app = json.loads(args.app.read_text())
    score = import_score(app)
    score.init()

    def call(body: str) -> object:
        return score.run(**json.loads(body))

    results = {}
    for rows, path in app["bodies"].items():
        body = Path(path).read_text()
        answer = call(body)
        run_loop(call, body, min(1.0, args.seconds / 2))  # warm-up
        calls = run_loop(call, body, args.seconds)
        results[rows] = {"calls_per_s": calls, "rows_per_s": calls * int(rows), "answer": answer}
    results["singles"] = [call(Path(p).read_text()) for p in app["singles"]]
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
