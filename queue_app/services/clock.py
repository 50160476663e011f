"""Business-time arithmetic over a Calendar.

For now every calendar is treated as round the clock (24x7); business minutes equal
wall-clock minutes. The functions keep the signature a full calendar needs, so callers
do not change when working hours and holidays are honoured.
"""
from datetime import timedelta


def add_business_minutes(calendar, start, minutes):
    """The instant `minutes` business minutes after `start`."""
    return start + timedelta(minutes=minutes)


def business_minutes_between(calendar, start, end):
    """Business minutes from start to end (negative if end is before start)."""
    return (end - start).total_seconds() / 60
