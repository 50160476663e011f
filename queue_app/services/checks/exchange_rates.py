"""Currency conversion through the rates kept in the database.

A rate is valid from its date until the next rate of the same pair. The direct pair is
preferred; the inverse of the opposite pair is used when only that one is known. Amounts
are Decimal all the way and rounded to cents (half-up) only at the end. Each rate recorded or
corrected is in the audit trail (services.audit).
"""
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa

from queue_app.models import ExchangeRate
from queue_app.services.audit import record as audit
from queue_app.services.errors import Invalid

CENT = Decimal("0.01")


class NoRate(Exception):
    """No rate converts between the two currencies on that day."""

    def __init__(self, from_currency, to_currency, on):
        super().__init__(f"no exchange rate from {from_currency} to {to_currency} on {on.isoformat()}")
        self.from_currency, self.to_currency, self.on = from_currency, to_currency, on


def _latest(session, from_currency, to_currency, on):
    return session.scalar(
        sa.select(ExchangeRate).where(ExchangeRate.from_currency == from_currency,
                                      ExchangeRate.to_currency == to_currency, ExchangeRate.valid_from <= on)
        .order_by(ExchangeRate.valid_from.desc()).limit(1))


def rate(session, from_currency, to_currency, on=None):
    """Units of to_currency for one unit of from_currency on the day `on` (default: today)."""
    on = on or date.today()
    from_currency, to_currency = from_currency.upper(), to_currency.upper()
    if from_currency == to_currency:
        return Decimal(1)
    direct = _latest(session, from_currency, to_currency, on)
    if direct is not None:
        return Decimal(direct.rate)
    inverse = _latest(session, to_currency, from_currency, on)
    if inverse is not None:
        return Decimal(1) / Decimal(inverse.rate)
    raise NoRate(from_currency, to_currency, on)


def convert(session, amount, from_currency, to_currency, on=None):
    """`amount` in to_currency, rounded to cents; raises NoRate."""
    amount = Decimal(amount)
    if from_currency.upper() == to_currency.upper():
        return amount
    return (amount * rate(session, from_currency, to_currency, on)).quantize(CENT, rounding=ROUND_HALF_UP)


def set_rate(session, from_currency, to_currency, value, valid_from=None, *, actor=None):
    """Record (or correct) the rate of a pair from a day on."""
    valid_from = valid_from or date.today()
    codes = []
    for name, code in (("from_currency", from_currency), ("to_currency", to_currency)):
        code = (code or "").strip().upper()
        if len(code) != 3 or not code.isalpha() or not code.isascii():
            raise Invalid(f"{name} must be a 3-letter currency code", {name: "3-letter code"})
        codes.append(code)
    if codes[0] == codes[1]:
        raise Invalid("the two currencies must differ", {"to_currency": "same as from_currency"})
    try:
        value = Decimal(str(value))
    except ArithmeticError:
        value = Decimal(-1)
    if not value.is_finite() or value <= 0:
        raise Invalid("the rate must be a positive number", {"rate": "must be positive"})
    row = session.scalar(sa.select(ExchangeRate).where(ExchangeRate.from_currency == codes[0],
                                                       ExchangeRate.to_currency == codes[1],
                                                       ExchangeRate.valid_from == valid_from))
    before = audit.snapshot(row, ("rate",)) if row is not None else None
    if row is None:
        row = ExchangeRate(from_currency=codes[0], to_currency=codes[1], valid_from=valid_from)
        session.add(row)
    row.rate = value
    session.flush()
    audit.changed(session, actor, "exchange_rate", row, before,
                  audit.snapshot(row, ("rate",)) if before is not None else audit.snapshot(
                      row, ("from_currency", "to_currency", "valid_from", "rate")),
                  label=f"{codes[0]} to {codes[1]} from {valid_from.isoformat()}")
    return row
