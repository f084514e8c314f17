"""Dates and time zones (IANA names through ``zoneinfo``): convert, add durations, count days and business days.

No tool reads the clock: every instant is an argument, so results are reproducible.
"""

from __future__ import annotations

import difflib
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import Field

from shared.errors import ToolArgumentsInvalid

__all__ = ["add_duration", "business_days_between", "convert_timezone", "date_difference"]

MAX_SPAN_DAYS = 200 * 366
"""Longest span ``date_difference`` counts business days over."""


def _zone(name: str, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, sorted(available_timezones()), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else " (use an IANA name like 'Europe/Paris')"
        raise ToolArgumentsInvalid(f"unknown time zone {name!r}{hint}", field=field) from None


def _instant(text: str, zone: ZoneInfo, field: str) -> datetime:
    """Parse ISO 8601; a value without offset is local time in ``zone``, one with an offset keeps it."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ToolArgumentsInvalid(
            f"{text!r} is not an ISO 8601 date or date-time like '2024-03-01T09:30:00'", field=field
        ) from None
    return parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed


def _describe(moment: datetime) -> dict[str, Any]:
    return {
        "datetime": moment.isoformat(),
        "date": moment.date().isoformat(),
        "time": moment.time().isoformat(),
        "weekday": moment.strftime("%A"),
        "utc_offset": moment.strftime("%z"),
        "zone_abbreviation": moment.tzname(),
    }


def convert_timezone(datetime_text: str, to_tz: str, from_tz: str = "UTC") -> dict[str, Any]:
    """Convert a date-time from one time zone to another (daylight saving time handled).

    Args:
        datetime_text: ISO 8601 date-time, e.g. "2024-07-01T09:00:00"; without an offset it is read in from_tz.
        to_tz: IANA time zone to convert to, e.g. "Asia/Tokyo".
        from_tz: IANA time zone of datetime_text when it has no offset, e.g. "Europe/Paris".
    """
    source = _instant(datetime_text, _zone(from_tz, "args.from_tz"), "args.datetime_text")
    target = source.astimezone(_zone(to_tz, "args.to_tz"))
    return {"input": _describe(source), "result": _describe(target), "to_tz": to_tz}


def add_duration(
    datetime_text: str,
    tz: str = "UTC",
    weeks: float = 0,
    days: float = 0,
    hours: float = 0,
    minutes: float = 0,
    seconds: float = 0,
    business_days: Annotated[int, Field(ge=-100_000, le=100_000)] = 0,
) -> dict[str, Any]:
    """Add (or, with negative numbers, subtract) a duration to a date-time in a time zone.

    Weeks and days are calendar days (the local time of day is kept across daylight-saving changes); hours, minutes
    and seconds are elapsed time. business_days moves by weekdays (Monday to Friday), applied first.

    Args:
        datetime_text: ISO 8601 date or date-time, e.g. "2024-03-29T17:00:00".
        tz: IANA time zone of datetime_text when it has no offset.
        weeks: Calendar weeks to add.
        days: Calendar days to add.
        hours: Hours of elapsed time to add.
        minutes: Minutes of elapsed time to add.
        seconds: Seconds of elapsed time to add.
        business_days: Weekdays to add, skipping Saturdays and Sundays.
    """
    zone = _zone(tz, "args.tz")
    start = _instant(datetime_text, zone, "args.datetime_text")
    moment = start
    step = 1 if business_days >= 0 else -1
    remaining = abs(business_days)
    try:
        while remaining:
            moment += timedelta(days=step)
            if moment.weekday() < 5:
                remaining -= 1
        moment = moment + timedelta(weeks=weeks, days=days)  # wall-clock arithmetic in the zone
        moment = moment.astimezone(ZoneInfo("UTC")) + timedelta(hours=hours, minutes=minutes, seconds=seconds)
        moment = moment.astimezone(start.tzinfo)
    except OverflowError:
        raise ToolArgumentsInvalid("the result is outside the years 1 to 9999", field="args") from None
    return {"input": _describe(start), "result": _describe(moment)}


def business_days_between(start: date, end: date, holidays: frozenset[date] = frozenset()) -> int:
    """Weekdays (Mon-Fri, not in ``holidays``) from ``start`` (included) to ``end`` (excluded); negative if reversed."""
    if end < start:
        return -business_days_between(end, start, holidays)
    total = (end - start).days
    full_weeks, extra = divmod(total, 7)
    count = full_weeks * 5
    for offset in range(extra):
        if (start + timedelta(days=full_weeks * 7 + offset)).weekday() < 5:
            count += 1
    return count - sum(1 for day in holidays if start <= day < end and day.weekday() < 5)


def date_difference(
    start: str,
    end: str,
    tz: str = "UTC",
    holidays: Annotated[list[str], Field(max_length=1000)] = [],  # noqa: B006
) -> dict[str, Any]:
    """Measure the time between two dates or date-times: calendar days, business days, weeks, hours and seconds.

    Business days count Monday to Friday from start (included) to end (excluded), minus the given holidays.

    Args:
        start: ISO 8601 date or date-time, e.g. "2024-01-01".
        end: ISO 8601 date or date-time; may be before start (the results are then negative).
        tz: IANA time zone for values without an offset.
        holidays: ISO dates that are not business days, e.g. ["2024-12-25"].
    """
    zone = _zone(tz, "args.tz")
    first = _instant(start, zone, "args.start")
    last = _instant(end, zone, "args.end")
    if abs((last.date() - first.date()).days) > MAX_SPAN_DAYS:
        raise ToolArgumentsInvalid(f"the span is longer than {MAX_SPAN_DAYS} days", field="args.end")
    off: set[date] = set()
    for index, text in enumerate(holidays):
        try:
            off.add(date.fromisoformat(text))
        except ValueError:
            raise ToolArgumentsInvalid(f"{text!r} is not an ISO date", field=f"args.holidays[{index}]") from None
    elapsed = last - first
    return {
        "calendar_days": (last.date() - first.date()).days,
        "business_days": business_days_between(first.date(), last.date(), frozenset(off)),
        "weeks": round(elapsed.total_seconds() / 604800, 6),
        "days": round(elapsed.total_seconds() / 86400, 6),
        "hours": round(elapsed.total_seconds() / 3600, 6),
        "seconds": elapsed.total_seconds(),
    }
