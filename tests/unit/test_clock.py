"""Business-time arithmetic: working hours, holidays, closed dates, DST, overnight shifts."""
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queue_app.models import Calendar
from queue_app.models.calendar import round_the_clock_hours
from queue_app.services.sla import clock as sla_clock

UTC = timezone.utc
KOLKATA = ZoneInfo("Asia/Kolkata")
BERLIN = ZoneInfo("Europe/Berlin")
WORKDAYS = ("mon", "tue", "wed", "thu", "fri")
ALL_DAYS = WORKDAYS + ("sat", "sun")


def calendar(timezone="UTC", hours=None, holiday_country=None, holiday_subdivision=None, closed_dates=()):
    return SimpleNamespace(timezone=timezone, hours=round_the_clock_hours() if hours is None else hours,
                           holiday_country=holiday_country, holiday_subdivision=holiday_subdivision,
                           closed_dates=list(closed_dates))


PUNE = Calendar(name="Pune office", timezone="Asia/Kolkata",
                hours={day: ["09:30-13:00", "14:00-18:00"] for day in WORKDAYS},
                holiday_country="IN", holiday_subdivision="MH", closed_dates=["2026-12-24"])
BERLIN_DAY = calendar("Europe/Berlin", {day: ["09:00-17:00"] for day in ALL_DAYS})
BERLIN_NIGHT = calendar("Europe/Berlin", {day: ["22:00-06:00"] for day in ALL_DAYS})
NIGHT_SHIFT = calendar("UTC", {day: ["22:00-06:00"] for day in WORKDAYS}, closed_dates=["2026-11-24"])
SPLIT_SHIFT = calendar("UTC", {day: ["16:00-20:00", "07:00-11:00"] for day in ALL_DAYS})
ALL_DAY_UTC = calendar("UTC")
ALL_DAY_CLOSED_BERLIN = calendar("Europe/Berlin", closed_dates=["2026-03-29"])


def pune(*args):
    return datetime(*args, tzinfo=KOLKATA)


def berlin(*args):
    return datetime(*args, tzinfo=BERLIN)


def utc(*args):
    return datetime(*args, tzinfo=UTC)


# Pune: 09:30-13:00 and 14:00-18:00 Monday to Friday. 2026-11-24 (Tue) is Guru Nanak Jayanti,
# 2026-12-24 (Thu) a custom closed date, 2026-12-25 (Fri) Christmas.
@pytest.mark.parametrize("start, minutes, due", [
    (pune(2026, 11, 18, 12, 30), 60, pune(2026, 11, 18, 14, 30)),    # across lunch
    (pune(2026, 11, 18, 12, 30), 30, pune(2026, 11, 18, 13, 0)),     # ends exactly at lunch
    (pune(2026, 11, 18, 9, 30), 450, pune(2026, 11, 18, 18, 0)),     # a full day
    (pune(2026, 11, 18, 9, 30), 451, pune(2026, 11, 19, 9, 31)),
    (pune(2026, 11, 20, 17, 0), 120, pune(2026, 11, 23, 10, 30)),    # across a weekend
    (pune(2026, 11, 23, 17, 0), 120, pune(2026, 11, 25, 10, 30)),    # across Guru Nanak Jayanti
    (pune(2026, 12, 23, 17, 0), 120, pune(2026, 12, 28, 10, 30)),    # closed date, Christmas, weekend
    (pune(2026, 12, 23, 12, 0), 600, pune(2026, 12, 28, 15, 30)),
    (pune(2026, 11, 21, 10, 0), 30, pune(2026, 11, 23, 10, 0)),      # start on a Saturday
    (pune(2026, 11, 23, 7, 0), 30, pune(2026, 11, 23, 10, 0)),       # start before opening
    (pune(2026, 11, 19, 13, 30), 30, pune(2026, 11, 19, 14, 30)),    # start during lunch
    (pune(2026, 11, 19, 19, 0), 30, pune(2026, 11, 20, 10, 0)),      # start after closing
    (pune(2026, 11, 18, 10, 0), 0.5, pune(2026, 11, 18, 10, 0, 30)),  # fractional minutes
    (pune(2026, 11, 18, 10, 0), 2.25, pune(2026, 11, 18, 10, 2, 15)),
    (pune(2026, 11, 25, 10, 0), -60, pune(2026, 11, 23, 17, 30)),    # backwards over the holiday
    (pune(2026, 11, 23, 9, 45), -15, pune(2026, 11, 23, 9, 30)),
])
def test_pune_office(start, minutes, due):
    result = sla_clock.add_business_minutes(PUNE, start, minutes)
    assert result == due
    assert result.tzinfo is UTC
    assert sla_clock.business_minutes_between(PUNE, start, result) == minutes


def test_zero_minutes_returns_start_unchanged():
    saturday = pune(2026, 11, 21, 10, 0)
    assert sla_clock.add_business_minutes(PUNE, saturday, 0) is saturday
    assert sla_clock.add_business_minutes(None, saturday, 0) is saturday


@pytest.mark.parametrize("start, end, minutes", [
    (pune(2026, 11, 20, 9, 30), pune(2026, 11, 25, 9, 30), 900),    # Fri + Mon; weekend and holiday closed
    (pune(2026, 12, 23, 0, 0), pune(2026, 12, 29, 0, 0), 900),      # 23rd + 28th only
    (pune(2026, 11, 21, 0, 0), pune(2026, 11, 23, 0, 0), 0),        # a weekend
    (pune(2026, 11, 18, 12, 0), pune(2026, 11, 18, 15, 0), 120),    # lunch does not count
    (pune(2026, 11, 18, 13, 0), pune(2026, 11, 18, 14, 0), 0),
    (pune(2026, 11, 2, 0, 0), pune(2026, 11, 30, 0, 0), 19 * 450),  # November: 20 weekdays, one holiday
])
def test_pune_between(start, end, minutes):
    assert sla_clock.business_minutes_between(PUNE, start, end) == minutes
    assert sla_clock.business_minutes_between(PUNE, end, start) == -minutes


def test_pune_working_intervals_are_exact_utc_instants():
    intervals = list(sla_clock.working_intervals(PUNE, pune(2026, 11, 20, 12, 0), pune(2026, 11, 25, 0, 0)))
    assert intervals == [
        (utc(2026, 11, 20, 6, 30), utc(2026, 11, 20, 7, 30)),
        (utc(2026, 11, 20, 8, 30), utc(2026, 11, 20, 12, 30)),
        (utc(2026, 11, 23, 4, 0), utc(2026, 11, 23, 7, 30)),
        (utc(2026, 11, 23, 8, 30), utc(2026, 11, 23, 12, 30)),
    ]


# Berlin 2026: clocks go 02:00 -> 03:00 on Sunday 29 March and 03:00 -> 02:00 on Sunday 25 October.
@pytest.mark.parametrize("day, opens, closes", [
    (utc(2026, 3, 28), utc(2026, 3, 28, 8), utc(2026, 3, 28, 16)),
    (utc(2026, 3, 29), utc(2026, 3, 29, 7), utc(2026, 3, 29, 15)),
    (utc(2026, 10, 24), utc(2026, 10, 24, 7), utc(2026, 10, 24, 15)),
    (utc(2026, 10, 25), utc(2026, 10, 25, 8), utc(2026, 10, 25, 16)),
])
def test_berlin_day_is_eight_hours_on_both_sides_of_dst(day, opens, closes):
    assert list(sla_clock.working_intervals(BERLIN_DAY, day, day + timedelta(days=1))) == [(opens, closes)]
    assert sla_clock.business_minutes_between(BERLIN_DAY, day, day + timedelta(days=1)) == 480


@pytest.mark.parametrize("start, minutes, due", [
    (berlin(2026, 3, 28, 16, 0), 120, utc(2026, 3, 29, 8, 0)),     # 10:00 CEST
    (berlin(2026, 3, 28, 9, 0), 480 * 2, utc(2026, 3, 29, 15, 0)),  # 17:00 CEST
    (berlin(2026, 10, 24, 16, 0), 120, utc(2026, 10, 25, 9, 0)),   # 10:00 CET
    (berlin(2026, 10, 24, 9, 0), 480 * 2, utc(2026, 10, 25, 16, 0)),
    (berlin(2026, 3, 29, 2, 30), 60, utc(2026, 3, 29, 8, 0)),      # a start that never exists on the clock
])
def test_berlin_add_across_dst(start, minutes, due):
    assert sla_clock.add_business_minutes(BERLIN_DAY, start, minutes) == due


def test_overnight_shift_across_dst_lasts_as_long_as_it_really_does():
    def night_of(y, m, d):
        return sla_clock.business_minutes_between(BERLIN_NIGHT, berlin(y, m, d, 12), berlin(y, m, d + 1, 12))
    assert night_of(2026, 3, 28) == 7 * 60
    assert night_of(2026, 3, 29) == 8 * 60
    assert night_of(2026, 10, 24) == 9 * 60
    assert list(sla_clock.working_intervals(BERLIN_NIGHT, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))) == [
        (utc(2026, 10, 24, 20), utc(2026, 10, 25, 5))]


def test_wall_times_in_a_gap_resolve_forward_and_in_a_fold_take_the_first_occurrence():
    spring = calendar("Europe/Berlin", {"sun": ["02:30-03:15"]})
    assert list(sla_clock.working_intervals(spring, utc(2026, 3, 29), utc(2026, 3, 30))) == [
        (utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 15))]
    autumn = calendar("Europe/Berlin", {"sun": ["02:30-03:30"]})
    assert list(sla_clock.working_intervals(autumn, utc(2026, 10, 25), utc(2026, 10, 26))) == [
        (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 30))]


def test_overnight_shift_runs_into_the_next_day():
    # Friday's 22:00 shift ends Saturday 06:00; the next one starts Monday 22:00.
    assert sla_clock.add_business_minutes(NIGHT_SHIFT, utc(2026, 11, 20, 23), 8 * 60) == utc(2026, 11, 23, 23)
    assert sla_clock.add_business_minutes(NIGHT_SHIFT, utc(2026, 11, 21, 5, 30), 60) == utc(2026, 11, 23, 22, 30)
    assert sla_clock.business_minutes_between(NIGHT_SHIFT, utc(2026, 11, 21, 0), utc(2026, 11, 21, 12)) == 360


def test_closed_date_closes_the_shift_starting_that_day_not_the_one_running_into_it():
    # Monday night's shift runs into closed Tuesday; Tuesday night's shift does not run.
    assert list(sla_clock.working_intervals(NIGHT_SHIFT, utc(2026, 11, 23), utc(2026, 11, 26))) == [
        (utc(2026, 11, 23, 22), utc(2026, 11, 24, 6)),
        (utc(2026, 11, 25, 22), utc(2026, 11, 26, 0)),
    ]
    assert sla_clock.business_minutes_between(NIGHT_SHIFT, utc(2026, 11, 23), utc(2026, 11, 26)) == 600


def test_split_shift():
    assert sla_clock.add_business_minutes(SPLIT_SHIFT, utc(2026, 11, 18, 10), 120) == utc(2026, 11, 18, 17)
    assert sla_clock.add_business_minutes(SPLIT_SHIFT, utc(2026, 11, 18, 12), 1) == utc(2026, 11, 18, 16, 1)
    assert sla_clock.add_business_minutes(SPLIT_SHIFT, utc(2026, 11, 18, 19), 120) == utc(2026, 11, 19, 8)
    assert sla_clock.business_minutes_between(SPLIT_SHIFT, utc(2026, 11, 18, 8), utc(2026, 11, 18, 18)) == 300


def test_overlapping_shifts_count_once():
    overlapping = calendar("UTC", {"mon": ["22:00-06:00"], "tue": ["05:00-07:00"]})
    assert list(sla_clock.working_intervals(overlapping, utc(2026, 11, 23), utc(2026, 11, 25))) == [
        (utc(2026, 11, 23, 22), utc(2026, 11, 24, 7))]
    assert sla_clock.add_business_minutes(overlapping, utc(2026, 11, 24, 4), 120) == utc(2026, 11, 24, 6)


@pytest.mark.parametrize("cal", [None, ALL_DAY_UTC, calendar("Europe/Berlin"), Calendar(name="unsaved")],
                         ids=["none", "all-day-utc", "all-day-berlin", "model-defaults"])
@pytest.mark.parametrize("minutes", [1, 59.5, 240, 2880, 30 * 24 * 60])
def test_round_the_clock_equals_timedelta(cal, minutes):
    start = utc(2026, 3, 28, 23, 17, 5)
    assert sla_clock.add_business_minutes(cal, start, minutes) == start + timedelta(minutes=minutes)
    assert sla_clock.business_minutes_between(cal, start, start + timedelta(minutes=minutes)) == minutes


def test_round_the_clock_with_a_closed_date_loses_that_local_day():
    # 29 March 2026 is 23 hours long in Berlin.
    assert sla_clock.business_minutes_between(ALL_DAY_CLOSED_BERLIN, berlin(2026, 3, 28), berlin(2026, 3, 31)) == 48 * 60
    assert list(sla_clock.working_intervals(ALL_DAY_CLOSED_BERLIN, berlin(2026, 3, 27), berlin(2026, 3, 31))) == [
        (utc(2026, 3, 26, 23), utc(2026, 3, 28, 23)), (utc(2026, 3, 29, 22), utc(2026, 3, 30, 22))]
    assert sla_clock.add_business_minutes(ALL_DAY_CLOSED_BERLIN, berlin(2026, 3, 28, 23), 90) == utc(2026, 3, 29, 22, 30)


def test_results_are_utc_for_any_aware_input():
    result = sla_clock.add_business_minutes(None, pune(2026, 11, 18, 10), 30)
    assert result.tzinfo is UTC and result == pune(2026, 11, 18, 10, 30)


def test_thirty_business_days_walks_days_not_minutes():
    start = pune(2026, 1, 5, 9, 30)
    began = time.perf_counter()
    due = sla_clock.add_business_minutes(PUNE, start, 30 * 24 * 60)
    assert time.perf_counter() - began < 0.25
    assert sla_clock.business_minutes_between(PUNE, start, due) == 30 * 24 * 60


def test_calendar_without_working_time_raises_instead_of_looping():
    never = calendar("UTC", {})
    assert sla_clock.business_minutes_between(never, utc(2026, 1, 1), utc(2030, 1, 1)) == 0
    with pytest.raises(ValueError, match="no working hours"):
        sla_clock.add_business_minutes(never, utc(2026, 1, 1), 1)
    mondays = [(datetime(2026, 1, 5) + timedelta(weeks=n)).date().isoformat() for n in range(200)]
    all_closed = calendar("UTC", {"mon": ["09:00-17:00"]}, closed_dates=mondays)
    with pytest.raises(ValueError, match="no working time"):
        sla_clock.add_business_minutes(all_closed, utc(2026, 1, 1), 1)
    with pytest.raises(ValueError, match="no working time"):
        sla_clock.add_business_minutes(all_closed, utc(2029, 10, 1), -1)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive"):
        sla_clock.add_business_minutes(PUNE, datetime(2026, 11, 18, 10), 30)
    with pytest.raises(ValueError, match="naive"):
        sla_clock.business_minutes_between(None, utc(2026, 11, 18), datetime(2026, 11, 19))


@pytest.mark.parametrize("cal, message", [
    (calendar("Mars/Olympus"), "unknown time zone"),
    (calendar("UTC", {"mon": ["9-17"]}), "mon: interval '9-17'"),
    (calendar("UTC", closed_dates=["24/12/2026"]), "closed date '24/12/2026'"),
    (calendar("UTC", {"mon": ["09:00-17:00"]}, holiday_country="XX"), "no holiday data"),
])
def test_bad_calendars_raise_value_error(cal, message):
    with pytest.raises(ValueError, match=message):
        sla_clock.add_business_minutes(cal, utc(2026, 11, 18), 30)


def test_validate_hours_accepts_good_hours():
    sla_clock.validate_hours({"mon": ["09:30-13:00", "14:00-18:00"], "tue": ["22:00-06:00"], "wed": ["00:00-24:00"],
                          "thu": [], "fri": ["18:00-24:00"], "sat": ["00:00-02:00", "22:00-02:00"]})
    sla_clock.validate_hours({})
    sla_clock.validate_hours(round_the_clock_hours())


@pytest.mark.parametrize("hours, message", [
    ({"mon": ["9-17"]}, r"mon: interval '9-17' is not 'HH:MM-HH:MM'"),
    ({"tue": ["09:00-17:00", "25:00-26:00"]}, r"tue: interval '25:00-26:00'"),
    ({"wed": ["09:60-10:00"]}, r"wed: interval '09:60-10:00'"),
    ({"thu": ["24:00-02:00"]}, r"thu: interval '24:00-02:00'"),
    ({"fri": ["09:00-24:30"]}, r"fri: interval '09:00-24:30'"),
    ({"sat": "09:00-17:00"}, r"sat: expected a list"),
    ({"sun": [900]}, r"sun: interval 900"),
    ({"monday": ["09:00-17:00"]}, r"unknown day 'monday'"),
    ({"mon": ["09:00-13:00", "12:00-18:00"]}, r"mon: intervals '09:00-13:00' and '12:00-18:00' overlap"),
    ({"tue": ["22:00-06:00", "23:00-23:30"]}, r"tue: intervals '22:00-06:00' and '23:00-23:30' overlap"),
    (["09:00-17:00"], r"hours must map weekdays"),
])
def test_validate_hours_names_the_bad_day_and_interval(hours, message):
    with pytest.raises(ValueError, match=message):
        sla_clock.validate_hours(hours)


PROPERTY_CALENDARS = [None, PUNE, BERLIN_DAY, BERLIN_NIGHT, NIGHT_SHIFT, SPLIT_SHIFT, ALL_DAY_CLOSED_BERLIN]
PROPERTY_IDS = ["none", "pune", "berlin-day", "berlin-night", "night-shift", "split-shift", "all-day-closed"]
property_settings = settings(max_examples=150, deadline=None, database=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])
instants = st.datetimes(min_value=datetime(2025, 6, 1), max_value=datetime(2027, 6, 1), timezones=st.just(UTC))
gaps = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=60))
amounts = st.floats(min_value=0, max_value=20000, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("cal", PROPERTY_CALENDARS, ids=PROPERTY_IDS)
@property_settings
@given(start=instants, minutes=amounts)
def test_between_inverts_add(cal, start, minutes):
    due = sla_clock.add_business_minutes(cal, start, minutes)
    assert due >= start
    assert sla_clock.business_minutes_between(cal, start, due) == pytest.approx(minutes, abs=1e-6)
    earlier = sla_clock.add_business_minutes(cal, start, -minutes)
    assert earlier <= start
    assert sla_clock.business_minutes_between(cal, earlier, start) == pytest.approx(minutes, abs=1e-6)


@pytest.mark.parametrize("cal", PROPERTY_CALENDARS, ids=PROPERTY_IDS)
@property_settings
@given(start=instants, first=amounts, second=amounts)
def test_add_is_monotonic(cal, start, first, second):
    low, high = sorted((first, second))
    assert sla_clock.add_business_minutes(cal, start, low) <= sla_clock.add_business_minutes(cal, start, high)


@pytest.mark.parametrize("cal", PROPERTY_CALENDARS, ids=PROPERTY_IDS)
@property_settings
@given(a=instants, to_b=gaps, to_c=gaps, order=st.permutations([0, 1, 2]))
def test_between_is_additive_and_not_negative(cal, a, to_b, to_c, order):
    points = [a, a + to_b, a + to_b + to_c]
    assert sla_clock.business_minutes_between(cal, points[0], points[1]) >= 0
    assert sla_clock.business_minutes_between(cal, points[0], points[2]) >= 0
    x, y, z = (points[i] for i in order)
    total = sla_clock.business_minutes_between(cal, x, y) + sla_clock.business_minutes_between(cal, y, z)
    assert total == pytest.approx(sla_clock.business_minutes_between(cal, x, z), abs=1e-6)


def test_an_edited_calendar_is_not_answered_from_the_parsed_schedule_of_before():
    """Schedules are parsed once per calendar content; changing the hours or closing a day
    must change the answer straight away, on the same object."""
    cal = calendar(hours={"mon": ["09:00-17:00"], "tue": ["09:00-17:00"]})
    monday_9 = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
    assert sla_clock.add_business_minutes(cal, monday_9, 8 * 60 + 60) == datetime(2026, 11, 24, 10, tzinfo=timezone.utc)
    cal.hours = {"mon": ["09:00-18:00"], "tue": ["09:00-17:00"]}
    assert sla_clock.add_business_minutes(cal, monday_9, 8 * 60 + 60) == datetime(2026, 11, 23, 18, tzinfo=timezone.utc)
    cal.closed_dates = ["2026-11-23"]
    assert sla_clock.add_business_minutes(cal, monday_9, 60) == datetime(2026, 11, 24, 10, tzinfo=timezone.utc)
    cal.hours["mon"] = ["bad"]  # malformed data is still reported, not served from the cache
    with pytest.raises(ValueError):
        sla_clock.add_business_minutes(cal, monday_9, 60)
