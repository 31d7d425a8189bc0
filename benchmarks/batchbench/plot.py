"""Good req/s against connections, one line per server and setting; runs in the project venv (matplotlib).

Example::

    .venv/bin/python benchmarks/batchbench/plot.py data.json benchmarks/results/batching.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLES = {
    "reference": ("tab:gray", "o", "-"),
    "mlmagics-before": ("tab:cyan", "v", ":"),
    "mlmagics-off": ("tab:blue", "s", "--"),
    "mlmagics-batch": ("tab:blue", "D", "-"),
    "bentoml-1000": ("tab:orange", "^", "-"),
    "bentoml-10": ("tab:red", "x", "--"),
}


def main(argv: list[str]) -> int:
    """``plot.py DATA.json OUT.png``: DATA has ``lines`` (key, label, conns, good_rps), ``inprocess``, ``title``."""
    data = json.loads(Path(argv[0]).read_text())
    fig, ax = plt.subplots(figsize=(8.5, 5.2), dpi=120)
    for line in data["lines"]:
        color, marker, style = STYLES.get(line["key"], ("black", ".", "-"))
        ax.plot(line["conns"], line["good_rps"], marker=marker, linestyle=style, color=color, label=line["label"])
    if data.get("inprocess"):
        ax.axhline(
            data["inprocess"],
            color="black",
            linewidth=0.8,
            linestyle="-.",
            label=f"in-process run() loop, 1 process, 1 row per call ({data['inprocess']:,.0f}/s)",
        )
    conns = sorted({c for line in data["lines"] for c in line["conns"]})
    ax.set_xscale("log", base=2)
    ax.set_xticks(conns, [str(c) for c in conns])
    ax.set_xlabel("connections (wrk), 1 row per request")
    ax.set_ylabel("good req/s (2xx answers only)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.set_title(data["title"], fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
