"""NCRONTAB schedules, read and evaluated as the Functions timer trigger reads them.

The timer trigger parses its schedule with the NCrontab library (sources in
`docs/architecture.md`): six fields `{second} {minute} {hour} {day} {month} {day-of-week}`
split on spaces, or five without the seconds (then the second is 0). Each field is a list
of elements separated by commas; an element is `*`, a value, a range `a-b` (given the wrong
way round, NCrontab swaps it), or any of these with a step `/n` (a single value with a step
runs from it to the field's maximum). Months and days of the week may be given by English
name or any prefix of one, ignoring case; days of the week run 0-6 from Sunday (7 is
refused). A time matches when every field matches: unlike Unix cron, a restricted day of
month and a restricted day of week must *both* match.

This module refuses what NCrontab refuses, and one thing more: a step of 0 (NCrontab reads
it as 1). Times are UTC: the Functions host evaluates schedules in the instance's time zone,
which is UTC on Linux Consumption and Flex Consumption (`WEBSITE_TIME_ZONE` is not
supported there).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

__all__ = ["CronSchedule", "ScheduleError"]

_MONTHS = tuple(calendar.month_name[1:])
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_GREGORIAN_CYCLE_YEARS = 400
"""The calendar repeats every 400 years: a schedule with no occurrence in that span has none."""


class ScheduleError(ValueError):
    """The expression is not a schedule the timer trigger accepts."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()

    def parse(self, text: str) -> tuple[int, ...]:
        values: set[int] = set()
        for element in text.split(","):
            values.update(self._element(element))
        return tuple(sorted(values))

    def _element(self, element: str) -> range:
        if not element:
            raise ScheduleError(f"the {self.name} field has an empty element")
        step, stepped = 1, False
        if "/" in element:
            original = element
            element, _, step_text = element.partition("/")
            if not element or not _is_number(step_text) or int(step_text) == 0:
                raise ScheduleError(f"{original!r} is not a valid step in the {self.name} field")
            step, stepped = int(step_text), True
        if element == "*":
            start, end = self.low, self.high
        elif "-" in element[1:]:
            first, _, last = element.partition("-")
            start, end = sorted((self._value(first), self._value(last)))
        else:
            start = self._value(element)
            end = self.high if stepped else start
        return range(start, end + 1, step)

    def _value(self, text: str) -> int:
        if _is_number(text):
            value = int(text)
            if not self.low <= value <= self.high:
                raise ScheduleError(f"{value} is outside {self.low}-{self.high} in the {self.name} field")
            return value
        if text:
            for offset, name in enumerate(self.names):
                if name.lower().startswith(text.lower()):
                    return self.low + offset
        raise ScheduleError(f"{text!r} is not a value of the {self.name} field")


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 6, _DAYS),
)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed NCRONTAB schedule: the values each field allows, in ascending order."""

    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Read a five- or six-field expression; `ScheduleError` says what is wrong with it."""
        tokens = [token for token in expression.split(" ") if token]
        if len(tokens) == 5:
            tokens.insert(0, "0")
        if len(tokens) != 6:
            raise ScheduleError(
                f"{expression!r} must have six fields ({{second}} {{minute}} {{hour}} {{day}} {{month}}"
                " {day-of-week}), or five without the second"
            )
        values = [field.parse(token) for field, token in zip(_FIELDS, tokens, strict=True)]
        return cls(expression, *values)

    @property
    def fires_more_than_once_a_minute(self) -> bool:
        """Every minute of every day, at more than one second: the host then turns schedule monitoring off."""
        every_minute = all(
            len(values) == field.high - field.low + 1
            for field, values in zip(
                _FIELDS[1:], (self.minutes, self.hours, self.days, self.months, self.days_of_week), strict=True
            )
        )
        return every_minute and len(self.seconds) > 1

    def next_after(self, moment: datetime) -> datetime | None:
        """The first occurrence after `moment` (at least into the next whole second), in UTC; None if there is none."""
        start = moment.astimezone(UTC).replace(microsecond=0, tzinfo=None) + timedelta(seconds=1)
        last_year = min(start.year + _GREGORIAN_CYCLE_YEARS, datetime.max.year)
        for year in range(start.year, last_year + 1):
            for month in self.months:
                if (year, month) < (start.year, start.month):
                    continue
                found = self._in_month(year, month, start)
                if found is not None:
                    return found
        return None

    def _in_month(self, year: int, month: int, start: datetime) -> datetime | None:
        days_in_month = calendar.monthrange(year, month)[1]
        for day in self.days:
            if day > days_in_month:
                break
            candidate = date(year, month, day)
            if candidate < start.date() or candidate.isoweekday() % 7 not in self.days_of_week:
                continue
            at = self._first_time(start.time() if candidate == start.date() else time())
            if at is not None:
                return datetime.combine(candidate, at, UTC)
        return None

    def _first_time(self, earliest: time) -> time | None:
        for hour in self.hours:
            if hour < earliest.hour:
                continue
            for minute in self.minutes:
                if (hour, minute) < (earliest.hour, earliest.minute):
                    continue
                for second in self.seconds:
                    if (hour, minute, second) >= (earliest.hour, earliest.minute, earliest.second):
                        return time(hour, minute, second)
        return None

    def __str__(self) -> str:
        return self.expression
