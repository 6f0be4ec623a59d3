"""The per-epoch progress line of `archc train`: redrawn in place on a terminal, with a bar; on
a log (CI, a pipe, a file) plain text, one line per epoch plus one every half-minute of a long
epoch, without the bar's glyphs or control characters."""

from __future__ import annotations

import sys
import time

LOG_EVERY_S = 30.0


def plural(count: int, noun: str) -> str:
    """'1 epoch', '2 epochs', '1,438 steps'."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


class Progress:
    def __init__(self, epochs: int, steps: int, stream=None, enabled: bool = True):
        self.epochs, self.steps = epochs, steps
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._drawn = False

    def _bar(self, done: int, width: int = 24) -> str:
        filled = width * done // max(1, self.steps)
        return "█" * filled + "·" * (width - filled)

    def step(self, epoch: int, step: int, loss: float, acc: float, rate: float) -> None:
        if not self.enabled:
            return
        bar = f"{self._bar(step)} " if self.tty else "step "
        text = (f"epoch {epoch + 1:>{len(str(self.epochs))}}/{self.epochs} {bar}"
                f"{step:>{len(str(self.steps))}}/{self.steps}  loss {loss:.4f}  acc {acc:6.1%}  {rate:,.0f} img/s")
        now = time.monotonic()
        if self.tty:
            if now - self._last > 0.1 or step == self.steps:
                self.stream.write("\r\033[K" + text)
                self.stream.flush()
                self._last, self._drawn = now, True
        elif now - self._last > LOG_EVERY_S and step < self.steps:
            if self._last:
                self.stream.write(text + "\n")
                self.stream.flush()
            self._last = now

    def line(self, text: str) -> None:
        """A line that stays: the epoch summary, a notice."""
        if not self.enabled:
            return
        if self.tty and self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last = time.monotonic()
