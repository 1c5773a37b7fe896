"""The farm's progress bar: done/failed/total, dialogues per minute and ETA, on stderr (one line
redrawn on a terminal; a line every few seconds in a log)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    def __init__(self, total: int, skipped: int = 0, stream: TextIO | None = None, width: int = 24,
                 log_every: float = 5.0) -> None:
        self.total, self.skipped = total, skipped
        self.ok = self.failed = 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.width, self.log_every = width, log_every
        self.t0 = time.monotonic()
        self._last = 0.0

    @property
    def finished(self) -> int:  # in this run
        return self.ok + self.failed

    def rate(self) -> float:
        """Dialogues per minute, run here (skipped ones do not count)."""
        elapsed = time.monotonic() - self.t0
        return 60.0 * self.finished / elapsed if elapsed > 0 and self.finished else 0.0

    def line(self) -> str:
        done = self.ok + self.skipped
        frac = (done + self.failed) / self.total if self.total else 1.0
        fill = round(frac * self.width)
        bar = "#" * fill + "." * (self.width - fill)
        left = self.total - done - self.failed
        rate = self.rate()
        eta = "0:00" if left == 0 else clock(60.0 * left / rate) if rate > 0 else "?"
        skipped = f", {self.skipped} up to date" if self.skipped else ""
        return (f"farm [{bar}] {done}/{self.total} done, {self.failed} failed{skipped} | "
                f"{rate:.1f} dialogues/min | ETA {eta}")

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()
        elif force or now - self._last >= self.log_every:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self._last = now

    def note(self, text: str) -> None:
        """A message on its own line (the bar is drawn again after it)."""
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        if self.tty:
            self.show()

    def close(self) -> None:
        self.show(force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
