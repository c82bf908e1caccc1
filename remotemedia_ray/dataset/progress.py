"""The job's progress line: files, audio hours, x realtime, errors and ETA."""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["Progress", "realtime_text"]


class Progress:
    """Files done/total, audio hours, x realtime, errors and ETA, on a terminal
    as one live line, elsewhere as a plain line every ``interval_s`` seconds.

    ``total`` is None while the inputs are still being listed (``files 12/?``).
    """

    def __init__(
        self,
        total: int | None,
        *,
        stream: TextIO,
        live: bool,
        enabled: bool = True,
        interval_s: float = 10.0,
    ) -> None:
        self.enabled = enabled
        self.total = total
        self.stream = stream
        self.live = live
        self.interval_s = 0.2 if live else interval_s
        self.start = time.monotonic()
        self.last = 0.0

    def line(self, done: int, failed: int, audio_s: float) -> str:
        """The progress text for ``done`` and ``failed`` items and ``audio_s`` seconds of audio."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        finished = done + failed
        rate = finished / elapsed
        if self.total is None:  # still listing
            eta = float("inf")
        else:
            eta = (self.total - finished) / rate if rate > 0 else float("inf")
        eta_text = "--" if eta == float("inf") else f"{eta:,.0f}s"
        total = "?" if self.total is None else self.total
        return (
            f"files {finished}/{total}  audio {audio_s / 3600:.3f} h  "
            f"{realtime_text(audio_s / elapsed)} realtime  errors {failed}  ETA {eta_text}"
        )

    def update(self, done: int, failed: int, audio_s: float, *, final: bool = False) -> None:
        """Show the line if it is time to (always when ``final``)."""
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < self.interval_s):
            return
        self.last = now
        text = self.line(done, failed, audio_s)
        if self.live:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def realtime_text(value: float) -> str:
    """A realtime factor as the progress line and summary show it (``12x``, ``3.4x``)."""
    return f"{value:,.1f}x" if value < 10 else f"{value:,.0f}x"
