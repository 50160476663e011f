"""Business-time arithmetic over a Calendar.

`calendar` is None (round the clock, UTC) or an object with `timezone`, `hours`,
`holiday_country`, `holiday_subdivision` and `closed_dates`, like
queue_app.models.Calendar. Every instant given or returned is an aware datetime; results
are in UTC.

Rules, chosen so that due times match what the people on shift experience:
- Working intervals are built per local date from wall-clock times and converted to UTC
  with zoneinfo, so a 09:00-17:00 day is 8 real hours on both sides of a DST change and
  an overnight shift across a change lasts as long as it really does (7 or 9 hours for
  22:00-06:00 in Berlin).
- An interval whose end is not after its start ("22:00-06:00") is an overnight shift
  ending the next day; "00:00-24:00" is the whole day; a missing day or [] is closed.
- A wall time in a spring-forward gap does not exist; it resolves forward to the first
  instant after the gap (02:30 on the night Berlin jumps from 02:00 to 03:00 is 03:00
  CEST). An ambiguous wall time in an autumn fold takes its first occurrence (fold=0).
- A public holiday (the `holidays` package, by country and optional subdivision) or a
  custom closed date closes the shifts that start on that local date. A shift that began
  the evening before still runs to its end: its people are already at work.
- Overlapping shifts (say an overnight shift running into the next morning's) count once.
- add_business_minutes returns the earliest instant at which the minutes have elapsed,
  so a deadline may fall exactly at the end of a shift; 0 minutes returns start as given.
"""
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from queue_app.models.calendar import WEEKDAYS, round_the_clock_hours

DAY_SECONDS = 24 * 3600
MAX_IDLE_DAYS = 3 * 366
_BACKWARD_WINDOW = timedelta(days=31)
_INTERVAL = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


def add_business_minutes(calendar, start, minutes):
    """The earliest instant `minutes` business minutes after `start`.

    Negative minutes go back: the latest instant that much business time before start.
    """
    _require_aware(start)
    amount = timedelta(minutes=minutes if isinstance(minutes, (int, float)) else float(minutes))
    if not amount:
        return start
    start = start.astimezone(timezone.utc)
    schedule = _schedule(calendar)
    if schedule is None:
        return start + amount
    if not any(schedule.week):
        raise ValueError("the calendar has no working hours on any day")
    if amount > timedelta(0):
        return _add_forward(schedule, start, amount)
    return _add_backward(schedule, start, -amount)


def business_minutes_between(calendar, start, end):
    """Business minutes in [start, end); negative when end is before start."""
    _require_aware(start, end)
    if end < start:
        return -business_minutes_between(calendar, end, start)
    total = sum((e - s for s, e in working_intervals(calendar, start, end)), timedelta(0))
    return total / timedelta(minutes=1)


def working_intervals(calendar, start, end):
    """The working time inside [start, end) as sorted, disjoint (utc_start, utc_end) pairs.

    Touching intervals are joined, so a round-the-clock stretch comes back as one pair.
    """
    _require_aware(start, end)
    start = start.astimezone(timezone.utc)
    end = end.astimezone(timezone.utc)
    if end <= start:
        return iter(())
    schedule = _schedule(calendar)
    if schedule is None:
        return iter([(start, end)])
    return _joined(_forward(schedule, start, until=end), end)


def validate_hours(hours):
    """Raise ValueError naming the day and interval when weekly hours are malformed.

    Beyond the format, two intervals of the same day may not overlap; an overnight shift
    running into the next day's hours is allowed (the overlap counts once).
    """
    week = _parse_hours(hours)
    for day, intervals in zip(WEEKDAYS, week):
        for (s1, e1, text1), (s2, e2, text2) in zip(intervals, intervals[1:]):
            if s2 < e1:
                raise ValueError(f"{day}: intervals {text1!r} and {text2!r} overlap")


@dataclass(frozen=True)
class _Schedule:
    zone: ZoneInfo
    week: tuple  # per weekday, sorted (start, end) in seconds after local midnight
    country: str
    subdivision: str
    closed: frozenset

    def is_closed(self, day):
        if day in self.closed:
            return True
        return bool(self.country) and day in _holiday_dates(self.country, self.subdivision, day.year)

    def shifts(self, day):
        """UTC (start, end) of the shifts starting on local date `day`, in start order."""
        intervals = self.week[day.weekday()]
        if not intervals or self.is_closed(day):
            return ()
        midnight = datetime.combine(day, time())
        return [(_to_utc(midnight + timedelta(seconds=s), self.zone),
                 _to_utc(midnight + timedelta(seconds=e), self.zone)) for s, e in intervals]


def _schedule(calendar):
    """The calendar's rules ready to query, or None when it is open round the clock.

    Parsed once per distinct calendar content (a queue page asks for dozens of rows'
    business time against the same few calendars); an edited calendar is new content."""
    if calendar is None:
        return None
    hours = getattr(calendar, "hours", None)
    key = (getattr(calendar, "timezone", None) or "UTC", _frozen_hours(hours),
           getattr(calendar, "holiday_country", None) or None, getattr(calendar, "holiday_subdivision", None) or None,
           tuple(getattr(calendar, "closed_dates", None) or ()))
    try:
        hash(key)
    except TypeError:  # malformed data (validation reports it): parse without the cache
        return _build_schedule(hours, *key[:1], *key[2:])
    return _cached_schedule(key)


def _frozen_hours(hours):
    if not isinstance(hours, dict):
        return hours
    return tuple((day, tuple(intervals) if isinstance(intervals, list) else intervals)
                 for day, intervals in hours.items())


@lru_cache(maxsize=256)
def _cached_schedule(key):
    zone_name, frozen, country, subdivision, closed = key
    hours = None if frozen is None else {day: list(intervals) if isinstance(intervals, tuple) else intervals
                                         for day, intervals in frozen} if isinstance(frozen, tuple) else frozen
    return _build_schedule(hours, zone_name, country, subdivision, closed)


def _build_schedule(hours, zone_name, country, subdivision, closed_dates):
    zone = _zone(zone_name)
    week = tuple(tuple((s, e) for s, e, _ in day)
                 for day in _parse_hours(round_the_clock_hours() if hours is None else hours))
    closed = frozenset(_parse_date(d) for d in closed_dates)
    all_day = all(any(s == 0 and e >= DAY_SECONDS for s, e in day) for day in week)
    if all_day and not country and not closed:
        return None
    return _Schedule(zone, week, country, subdivision, closed)


def _zone(name):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _parse_date(value):
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"closed date {value!r} is not YYYY-MM-DD") from exc


def _parse_hours(hours):
    """Per weekday, the sorted (start, end, text) of its intervals, in seconds after midnight."""
    if not isinstance(hours, dict):
        raise ValueError("hours must map weekdays (mon..sun) to lists of 'HH:MM-HH:MM' intervals")
    unknown = sorted(repr(key) for key in hours if key not in WEEKDAYS)
    if unknown:
        raise ValueError(f"unknown day {unknown[0]}; days are {', '.join(WEEKDAYS)}")
    week = []
    for day in WEEKDAYS:
        intervals = hours.get(day) or []
        if not isinstance(intervals, (list, tuple)):
            raise ValueError(f"{day}: expected a list of 'HH:MM-HH:MM' intervals, got {intervals!r}")
        week.append(tuple(sorted(_parse_interval(day, text) for text in intervals)))
    return tuple(week)


def _parse_interval(day, text):
    match = _INTERVAL.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{day}: interval {text!r} is not 'HH:MM-HH:MM'")
    start_h, start_m, end_h, end_m = map(int, match.groups())
    if start_h > 23 or start_m > 59 or end_h > 24 or end_m > 59 or (end_h == 24 and end_m):
        raise ValueError(f"{day}: interval {text!r} has a time outside 00:00-24:00")
    start = start_h * 3600 + start_m * 60
    end = end_h * 3600 + end_m * 60
    if end <= start:
        end += DAY_SECONDS
    return start, end, text


@lru_cache(maxsize=512)
def _holiday_dates(country, subdivision, year):
    try:
        return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year))
    except NotImplementedError as exc:
        raise ValueError(f"no holiday data for country {country!r}, subdivision {subdivision!r}") from exc


def _to_utc(wall, zone):
    """The UTC instant of a naive local wall time: gaps resolve forward, folds use fold=0."""
    instant = wall.replace(tzinfo=zone).astimezone(timezone.utc)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    return _gap_end(wall, zone)


def _gap_end(wall, zone):
    """The instant a spring-forward gap containing `wall` ends (the clocks' jump)."""
    before = wall.replace(tzinfo=zone, fold=1).astimezone(timezone.utc)
    after = wall.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
    offset_before = before.astimezone(zone).utcoffset()
    low, high = 0, int((after - before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if (before + timedelta(seconds=middle)).astimezone(zone).utcoffset() == offset_before:
            low = middle
        else:
            high = middle
    return before + timedelta(seconds=high)


def _forward(schedule, start, until=None):
    """Disjoint working intervals ending after `start`, in time order.

    Without `until` the stream is endless, so it gives up with ValueError after
    MAX_IDLE_DAYS local days without any working time (everything closed).
    """
    day = start.astimezone(schedule.zone).date() - timedelta(days=2)
    last_day = until.astimezone(schedule.zone).date() + timedelta(days=1) if until else None
    cursor = start
    idle_days = 0
    while last_day is None or day <= last_day:
        found = False
        for s, e in schedule.shifts(day):
            s = max(s, cursor)
            if e > s:
                found = True
                cursor = e
                yield s, e
        idle_days = 0 if found else idle_days + 1
        if last_day is None and idle_days > MAX_IDLE_DAYS:
            raise ValueError(f"the calendar has no working time in the {MAX_IDLE_DAYS} days up to {day}")
        day += timedelta(days=1)


def _joined(intervals, end):
    """Clip a time-ordered disjoint stream at `end` and join intervals that touch."""
    current = None
    for s, e in intervals:
        if s >= end:
            break
        e = min(e, end)
        if current and s <= current[1]:
            current = (current[0], max(current[1], e))
        else:
            if current:
                yield current
            current = (s, e)
    if current:
        yield current


def _add_forward(schedule, start, amount):
    remaining = amount
    for s, e in _forward(schedule, start):
        if e - s >= remaining:
            return s + remaining
        remaining -= e - s
    raise AssertionError("the endless interval stream ended")


def _add_backward(schedule, start, amount):
    """The latest instant with `amount` of working time between it and start."""
    remaining = amount
    high = start
    last_work = start
    while True:
        low = high - _BACKWARD_WINDOW
        for s, e in reversed(list(_joined(_forward(schedule, low, until=high), high))):
            last_work = s
            if e - s >= remaining:
                return e - remaining
            remaining -= e - s
        if last_work - low > timedelta(days=MAX_IDLE_DAYS):
            raise ValueError(f"the calendar has no working time in the {MAX_IDLE_DAYS} days before {last_work.date()}")
        high = low


def _require_aware(*instants):
    for instant in instants:
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError(f"naive datetime {instant!r}: pass an aware (UTC) datetime")
