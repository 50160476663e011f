"""Exchange rates kept in the database: 1 unit of from_currency = rate units of to_currency,
valid from a date until the next rate of the same pair."""
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from queue_app.models.base import db, utcnow


class ExchangeRate(db.Model):
    __tablename__ = "exchange_rates"

    id: Mapped[int] = mapped_column(primary_key=True)
    from_currency: Mapped[str] = mapped_column(sa.String(3))
    to_currency: Mapped[str] = mapped_column(sa.String(3))
    rate: Mapped[Decimal] = mapped_column(sa.Numeric(20, 10))
    valid_from: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("from_currency", "to_currency", "valid_from", name="uq_exchange_rates_pair_day"),
        sa.CheckConstraint("rate > 0", name="rate_positive"),
    )
