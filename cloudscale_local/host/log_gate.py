"""What reaches the terminal under load: invocation lines rate-limited, repeated warnings collapsed.

A line per invocation is what `func start` prints, and what a new user wants to see; under a
load test it is thousands of lines a second, which no one reads and which slow the host (every
line is formatted and written by the process serving the requests). So, per process:

- invocation lines (records carrying an `invocation` attribute, `cloudscale_local.host.invocation_lines`):
  at most `per_second` in each one-second window; the rest are counted by what they say
  (function and HTTP status, or function and outcome), and one summary line follows the window:
  "… 1,234 more invocations in the last 1 s: ingest_events 202 (times) 1,200, process_event
  Succeeded (times) 34", with a multiplication sign for "(times)";
- repeated warnings and errors (the same logger, level and message template, whatever the
  arguments): the first `burst` of each in a window of `window_seconds` are written, the rest
  counted, and one line follows the window: "… 57 more like 'suspicious event %s …' in the last 10 s".

The gates are plain objects with an injected clock (tested without sleeping); `GatedHandler`
puts them in front of a stream and flushes the summaries of windows that ended from a daemon
thread, so a summary comes even when nothing is logged after the burst.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = ["GatedHandler", "InvocationRateLimit", "RepeatCollapse", "summary_key"]

Clock = Callable[[], float]

TIMES = "\N{MULTIPLICATION SIGN}"
SUMMARY_KEYS_SHOWN = 6
"""How many kinds a summary names before it says "and N more kinds"."""


def summary_key(record: logging.LogRecord) -> str:
    """What an invocation line is counted as in a summary: `function status` or `function outcome`."""
    line: Any = getattr(record, "invocation", None)
    key = getattr(line, "summary_key", None)
    return str(key) if key is not None else record.name


def _summary_record(template: logging.LogRecord, level: int, message: str) -> logging.LogRecord:
    record = logging.LogRecord(template.name, level, template.pathname, template.lineno, message, None, None)
    record.summary = True
    return record


@dataclass(slots=True)
class InvocationRateLimit:
    """At most `per_second` invocation lines in each one-second window; the others counted, then summed up."""

    per_second: int = 20
    window_seconds: float = 1.0
    _started: float | None = None
    _written: int = 0
    _suppressed: Counter[str] = field(default_factory=Counter)
    _template: logging.LogRecord | None = None

    def admit(self, record: logging.LogRecord, now: float) -> list[logging.LogRecord]:
        """The records to write for `record`: the summary of a window that ended, then `record` if it fits."""
        out = self.due(now)
        if self._started is None:
            self._started, self._written = now, 0
        if self._written < self.per_second:
            self._written += 1
            out.append(record)
        else:
            self._suppressed[summary_key(record)] += 1
            self._template = self._template or record
        return out

    def due(self, now: float) -> list[logging.LogRecord]:
        """The summary of the window, once it has ended (nothing if none was left out); starts a new one."""
        if self._started is None or now - self._started < self.window_seconds:
            return []
        suppressed, template = self._suppressed, self._template
        self._started, self._suppressed, self._template = None, Counter(), None
        if not suppressed or template is None:
            return []
        total = sum(suppressed.values())
        kinds = suppressed.most_common()
        shown = ", ".join(f"{key} {TIMES}{count:,}" for key, count in kinds[:SUMMARY_KEYS_SHOWN])
        if len(kinds) > SUMMARY_KEYS_SHOWN:
            shown += f", and {len(kinds) - SUMMARY_KEYS_SHOWN} more kinds"
        seconds = f"{self.window_seconds:g}"
        message = f"… {total:,} more invocation{'s' if total != 1 else ''} in the last {seconds} s: {shown}"
        return [_summary_record(template, logging.INFO, message)]


@dataclass(slots=True)
class _Repeats:
    started: float
    written: int = 1
    suppressed: int = 0
    template: logging.LogRecord | None = None


@dataclass(slots=True)
class RepeatCollapse:
    """The first `burst` records of a kind per `window_seconds` written; the rest counted, then summed up.

    A kind is (logger, level, message template). At most `max_kinds` kinds are tracked; a record
    of a kind beyond those is written (over-reporting rather than hiding a new warning).
    """

    burst: int = 3
    window_seconds: float = 10.0
    max_kinds: int = 1000
    _kinds: dict[tuple[str, int, str], _Repeats] = field(default_factory=dict)

    def admit(self, record: logging.LogRecord, now: float) -> list[logging.LogRecord]:
        """The records to write for `record`: summaries of windows that ended, then `record` unless collapsed."""
        out = self.due(now)
        kind = (record.name, record.levelno, str(record.msg))
        repeats = self._kinds.get(kind)
        if repeats is None:
            if len(self._kinds) < self.max_kinds:
                self._kinds[kind] = _Repeats(started=now)
            out.append(record)
        elif repeats.written < self.burst:
            repeats.written += 1
            out.append(record)
        else:
            repeats.suppressed += 1
            repeats.template = repeats.template or record
        return out

    def due(self, now: float) -> list[logging.LogRecord]:
        """One summary for each kind whose window ended with records left out; those kinds are forgotten."""
        ended = [kind for kind, repeats in self._kinds.items() if now - repeats.started >= self.window_seconds]
        out = []
        for kind in ended:
            repeats = self._kinds.pop(kind)
            if repeats.suppressed and repeats.template is not None:
                template = _shorten(str(repeats.template.msg))
                seconds = f"{self.window_seconds:g}"
                message = f"… {repeats.suppressed:,} more like '{template}' in the last {seconds} s"
                out.append(_summary_record(repeats.template, repeats.template.levelno, message))
        return out


def _shorten(text: str, limit: int = 120) -> str:
    text = text.splitlines()[0] if text else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


class GatedHandler(logging.StreamHandler):  # type: ignore[type-arg]  # StreamHandler is generic in typeshed only
    """A stream handler that writes invocation lines through an `InvocationRateLimit` and warnings and
    errors through a `RepeatCollapse`; everything else (INFO, DEBUG, CRITICAL) passes as it comes."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        rate_limit: InvocationRateLimit | None = None,
        collapse: RepeatCollapse | None = None,
        clock: Clock = time.monotonic,
        flush_every_seconds: float | None = 0.25,
    ) -> None:
        """`flush_every_seconds`: how often a daemon thread writes the summaries of windows that
        ended (None: only when the next record comes, or `flush_due` is called)."""
        super().__init__(stream)
        self.rate_limit = rate_limit or InvocationRateLimit()
        self.collapse = collapse or RepeatCollapse()
        self._clock = clock
        # Not `_closed`: `logging.Handler.close` sets that one to True.
        self._stopping = threading.Event()
        self.flusher: threading.Thread | None = None
        """The thread writing the summaries of ended windows (None without `flush_every_seconds`)."""
        if flush_every_seconds is not None:
            self.flusher = threading.Thread(
                target=self._flush_loop, args=(flush_every_seconds,), name="log-summaries", daemon=True
            )
            self.flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        # Called under the handler's lock (`Handler.handle`), as `flush_due` is: the gates need no lock of their own.
        try:
            now = self._clock()
            if getattr(record, "invocation", None) is not None:
                records = self.rate_limit.admit(record, now)
            elif logging.WARNING <= record.levelno < logging.CRITICAL and not getattr(record, "summary", False):
                records = self.collapse.admit(record, now)
            else:
                records = [record]
        except Exception:
            # As `StreamHandler.emit` does: a logging call never fails the code that made it.
            self.handleError(record)
            return
        for out in records:
            super().emit(out)

    def flush_due(self) -> None:
        """Write the summaries of windows that have ended."""
        with self.lock or threading.RLock():
            now = self._clock()
            for out in [*self.rate_limit.due(now), *self.collapse.due(now)]:
                super().emit(out)

    def close(self) -> None:
        """Write what was left out of the windows still running (the host is stopping), then close."""
        with self.lock or threading.RLock():
            if not self._stopping.is_set():
                self._stopping.set()
                for out in [*self.rate_limit.due(math.inf), *self.collapse.due(math.inf)]:
                    super().emit(out)
        super().close()

    def _flush_loop(self, every: float) -> None:
        while not self._stopping.wait(every):
            self.flush_due()
