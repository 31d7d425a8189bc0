"""The one small interface through which the core reports long work; faces render it.

A core operation takes `progress=` (anything with these four methods) and calls:

    progress.stage("Building image", total=5)   # a new step; total if it has countable parts
    progress.advance()                          # one part done
    progress.log("Step 3/5 : RUN pip install")  # a line of output worth showing live
    progress.done(ok=True, message="myimage:2 is ready")

`TextProgress` prints (what `show_output=True` gives in a terminal or a plain notebook);
the notebook faces render the same calls as a widget bar plus a log area.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


class Progress(Protocol):
    def stage(self, name: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def log(self, line: str) -> None: ...

    def done(self, ok: bool, message: str = "") -> None: ...


class NullProgress:
    """Reports nothing (`show_output=False`)."""

    def stage(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def log(self, line: str) -> None:
        pass

    def done(self, ok: bool, message: str = "") -> None:
        pass


class TextProgress:
    """Prints stages with their duration, and log lines indented under them."""

    def __init__(self, stream: TextIO | None = None, show_logs: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.show_logs = show_logs
        self._started = time.monotonic()
        self._stage_started = self._started

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def stage(self, name: str, total: int | None = None) -> None:
        self._stage_started = time.monotonic()
        self._print(f"{name} ...")

    def advance(self, n: int = 1) -> None:
        pass

    def log(self, line: str) -> None:
        if self.show_logs:
            self._print(f"  | {line.rstrip()}")

    def done(self, ok: bool, message: str = "") -> None:
        took = time.monotonic() - self._started
        self._print(f"{'Succeeded' if ok else 'Failed'}{': ' + message if message else ''} ({took:.1f} s)")


class Recorder:
    """Keeps every call (tests and faces that render after the fact use it)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def stage(self, name: str, total: int | None = None) -> None:
        self.events.append(("stage", name))

    def advance(self, n: int = 1) -> None:
        self.events.append(("advance", n))

    def log(self, line: str) -> None:
        self.events.append(("log", line))

    def done(self, ok: bool, message: str = "") -> None:
        self.events.append(("done", (ok, message)))

    @property
    def stages(self) -> list[str]:
        return [str(v) for k, v in self.events if k == "stage"]

    @property
    def lines(self) -> list[str]:
        return [str(v) for k, v in self.events if k == "log"]


def resolve(progress: Progress | None, show_output: bool) -> Progress:
    """The progress to report into: the caller's, else text when show_output, else nothing."""
    if progress is not None:
        return progress
    return TextProgress() if show_output else NullProgress()
