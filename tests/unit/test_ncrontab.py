"""NCRONTAB schedules as the Functions timer trigger reads them: next occurrences and refusals.

Dates are worked out by hand: 2026-03-01 is a Sunday, 2027-01-01 a Friday.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloudscale_local.host.ncrontab import CronSchedule, ScheduleError
from cloudscale_local.host.timer_trigger import parse_schedule


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


SUNDAY_NOON = at("2026-03-01T12:00:00.250")


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # the app's own reconciliation schedule: every hour at :15
        ("0 15 * * * *", SUNDAY_NOON, "2026-03-01T12:15:00"),
        ("0 15 * * * *", at("2026-03-01T12:15:00"), "2026-03-01T13:15:00"),
        ("0 15 * * * *", at("2026-03-01T12:14:59.999"), "2026-03-01T12:15:00"),
        ("0 15 * * * *", at("2026-12-31T23:15:00"), "2027-01-01T00:15:00"),
        # five fields: no seconds field, the second is 0
        ("15 * * * *", SUNDAY_NOON, "2026-03-01T12:15:00"),
        # every second, every 15 seconds, a list
        ("* * * * * *", SUNDAY_NOON, "2026-03-01T12:00:01"),
        ("*/15 * * * * *", SUNDAY_NOON, "2026-03-01T12:00:15"),
        ("*/15 * * * * *", at("2026-03-01T12:00:45"), "2026-03-01T12:01:00"),
        ("0,30 * * * * *", at("2026-03-01T12:00:30"), "2026-03-01T12:01:00"),
        # a single value with a step runs to the field's maximum: minutes 5, 25, 45
        ("0 5/20 * * * *", SUNDAY_NOON, "2026-03-01T12:05:00"),
        ("0 5/20 * * * *", at("2026-03-01T12:50:00"), "2026-03-01T13:05:00"),
        # a range with a step: hours 9, 13, 17
        ("0 0 9-17/4 * * *", SUNDAY_NOON, "2026-03-01T13:00:00"),
        # a range given backwards is swapped
        ("0 0 17-9 * * *", SUNDAY_NOON, "2026-03-01T13:00:00"),
        # weekdays at 9:30, from a Sunday
        ("0 30 9 * * 1-5", SUNDAY_NOON, "2026-03-02T09:30:00"),
        # names, any case, any prefix: the first Monday of January; Saturday; "t" is Tuesday
        ("0 30 9 * Jan Mon", SUNDAY_NOON, "2027-01-04T09:30:00"),
        ("0 0 12 * * sat", SUNDAY_NOON, "2026-03-07T12:00:00"),
        ("0 0 12 * * t", SUNDAY_NOON, "2026-03-03T12:00:00"),
        ("0 0 12 * february-MARCH *", at("2026-03-31T12:00:00"), "2027-02-01T12:00:00"),
        # day of month AND day of week (not OR, as Unix cron would): Friday the 13th
        ("0 0 0 13 * 5", SUNDAY_NOON, "2026-03-13T00:00:00"),
        # the 31st skips the months that have no 31st
        ("0 0 0 31 * *", at("2026-03-31T00:00:00"), "2026-05-31T00:00:00"),
        # the 29th of February waits for a leap year
        ("0 0 0 29 2 *", SUNDAY_NOON, "2028-02-29T00:00:00"),
        # extra spaces between fields are ignored
        ("0  15 *  * * *", SUNDAY_NOON, "2026-03-01T12:15:00"),
    ],
)
def test_the_next_occurrence(expression: str, after: datetime, expected: str) -> None:
    assert CronSchedule.parse(expression).next_after(after) == at(expected)


def test_a_time_with_an_offset_is_read_in_utc() -> None:
    # 13:00 at +02:00 is 11:00 UTC; schedules are UTC
    schedule = CronSchedule.parse("0 0 12 * * *")
    assert schedule.next_after(datetime.fromisoformat("2026-03-01T13:00:00+02:00")) == at("2026-03-01T12:00:00")


def test_a_schedule_that_never_comes_has_no_next_occurrence() -> None:
    assert CronSchedule.parse("0 0 0 30 2 *").next_after(SUNDAY_NOON) is None


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("15 * * *", "six fields"),
        ("0 0 15 * * * *", "six fields"),
        ("", "six fields"),
        ("60 * * * * *", "outside 0-59 in the second field"),
        ("0 0 24 * * *", "outside 0-23 in the hour field"),
        ("0 0 0 0 * *", "outside 1-31 in the day field"),
        ("0 0 0 * 13 *", "outside 1-12 in the month field"),
        ("0 0 0 * * 7", "outside 0-6 in the day-of-week field"),
        ("0 0 0 L * *", "day field"),
        ("0 0 0 ? * *", "day field"),
        ("0 0 0 * * 1#2", "day-of-week field"),
        ("0 0 0 * * Funday", "day-of-week field"),
        ("*/0 * * * * *", "step"),
        ("/5 * * * * *", "step"),
        ("1,,2 * * * * *", "empty element"),
        ("-5 * * * * *", "second field"),
        ("0 0 12 * * MON-", "day-of-week field"),
        ("0\t15 * * * *", "minute field"),
        ("@hourly", "six fields"),
    ],
)
def test_what_ncrontab_refuses_is_refused(expression: str, problem: str) -> None:
    with pytest.raises(ScheduleError, match=problem):
        CronSchedule.parse(expression)


def test_a_timespan_schedule_is_refused_with_its_reason() -> None:
    with pytest.raises(ScheduleError, match="App Service plan"):
        parse_schedule("01:00:00")


@pytest.mark.parametrize(
    ("expression", "more_than_once"),
    [
        ("* * * * * *", True),
        ("*/10 * * * * *", True),
        ("0-59 0-59 * * * *", True),
        ("0 * * * * *", False),
        ("0,30 0 * * * *", False),
        ("0 15 * * * *", False),
        ("* * * * *", False),
    ],
)
def test_schedules_that_fire_more_than_once_a_minute(expression: str, more_than_once: bool) -> None:
    assert CronSchedule.parse(expression).fires_more_than_once_a_minute is more_than_once


@pytest.mark.parametrize("expression", ["*/7 */13 * * * *", "5,10 */2 * * * *", "0-4/2 58-2 * * * *"])
def test_the_next_occurrence_is_the_first_matching_second(expression: str) -> None:
    # Checked against the plain definition: step second by second until every field matches.
    schedule = CronSchedule.parse(expression)

    def matches(moment: datetime) -> bool:
        return moment.second in schedule.seconds and moment.minute in schedule.minutes and moment.hour in schedule.hours

    for start_second in range(0, 2 * 3600, 997):
        start = at("2026-03-01T23:00:00.5") + timedelta(seconds=start_second)
        candidate = start.replace(microsecond=0) + timedelta(seconds=1)
        while not matches(candidate):
            candidate += timedelta(seconds=1)
        assert schedule.next_after(start) == candidate, start
