"""Progress of a long phase: a tqdm bar on a terminal, else a log line every `every_s` seconds.

tqdm redraws its bar with carriage returns several times a second; written to a file, a pipe or
a container log, that is thousands of lines per phase. So the bar is shown only when stderr
(where tqdm writes) is a terminal; otherwise `Progress` logs one line at most every `every_s`
seconds, plus, when the caller has no summary line of its own, one at the end. It lives in the
lowest layer that reports progress (training), so the CLI and the demo use the same helper.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)


def interactive() -> bool:
    """Whether a redrawn bar is readable here: stderr (tqdm's stream) is a terminal."""
    return sys.stderr.isatty()


class Progress:
    """`update(done)` / `postfix(...)` / `close()` over either a tqdm bar or periodic log lines."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        *,
        enabled: bool = True,
        every_s: float = 30.0,
        final_line: bool = False,
        bar: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0
        self._every_s, self._final_line, self._clock = every_s, final_line, clock
        self._postfix: dict[str, Any] = {}
        self._enabled = enabled
        self._last = clock()
        use_bar = interactive() if bar is None else bar
        self._bar = (
            tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True) if enabled and use_bar else None
        )

    def update(self, done: int) -> None:
        """Set the amount done so far (absolute, not an increment)."""
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
        self.done = done
        if self._bar is None and self._enabled and self._clock() - self._last >= self._every_s:
            self._log()

    def postfix(self, **values: Any) -> None:
        """Figures shown beside the count (the bar's postfix, or the end of the log line)."""
        self._postfix = values
        if self._bar is not None:
            self._bar.set_postfix(values)

    def close(self) -> None:
        """Close the bar, or log the last line when asked for one."""
        if self._bar is not None:
            self._bar.close()
        elif self._enabled and self._final_line:
            self._log()

    def _log(self) -> None:
        self._last = self._clock()
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        of = f"/{self.total:,}" if self.total is not None else ""
        extra = "".join(f", {k} {v}" for k, v in self._postfix.items())
        log.info("%s: %s%s %s%s%s", self.desc, f"{self.done:,}", of, self.unit, share, extra)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
