"""Business calendars: a time zone, weekly working hours and holidays."""
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from queue_app.models.base import db



ALL_DAY = ["00:00-24:00"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def round_the_clock_hours():
    return {day: list(ALL_DAY) for day in WEEKDAYS}


class Calendar(db.Model):
    __tablename__ = "calendars"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    # {"mon": ["09:00-17:00"], ...}; an interval ending before it starts runs past midnight.
    hours: Mapped[dict] = mapped_column(sa.JSON, default=round_the_clock_hours)
    holiday_country: Mapped[Optional[str]] = mapped_column(sa.String(8))
    holiday_subdivision: Mapped[Optional[str]] = mapped_column(sa.String(16))
    closed_dates: Mapped[list] = mapped_column(sa.JSON, default=list)

    @property
    def is_round_the_clock(self):
        return all(self.hours.get(day) == ALL_DAY for day in WEEKDAYS) and not self.holiday_country and not self.closed_dates
