"""What an item puts at stake, and whether resolving it needs a second person (maker-checker).

Resolving a return or a discrepancy fix whose amount at stake, converted to the team's base
currency, is above the team's approval threshold needs a checker. An amount no rate can
convert counts as above the threshold: a person must look. The gate (services.items.state)
asks this before any item is resolved, so it sits below the gate and imports nothing above it.
"""
from dataclasses import dataclass
from decimal import Decimal

from queue_app.services.checks import exchange_rates
from queue_app.services.checks.settings import settings_for

APPROVAL_TYPES = ("return", "discrepancy_fix")


@dataclass(frozen=True)
class Stake:
    """The money a resolution moves, in the item's currency and in the team's base currency."""

    amount: Decimal
    currency: str
    base_amount: Decimal | None  # None: no exchange rate converts it
    base_currency: str
    threshold: Decimal | None

    @property
    def over_threshold(self):
        if self.threshold is None:
            return False
        return self.base_amount is None or self.base_amount > self.threshold

    def as_data(self):
        return {"amount": f"{self.amount:.2f}", "currency": self.currency,
                "base_amount": None if self.base_amount is None else f"{self.base_amount:.2f}",
                "base_currency": self.base_currency,
                "threshold": None if self.threshold is None else f"{Decimal(self.threshold):.2f}"}


def stake(session, item, on=None):
    """The Stake of a return (its amount) or a discrepancy fix (|expected - actual|), else None."""
    if item.type == "return":
        amount = item.amount
    elif item.type == "discrepancy_fix" and item.expected_amount is not None and item.actual_amount is not None:
        amount = abs(Decimal(item.expected_amount) - Decimal(item.actual_amount))
    else:
        return None
    if amount is None:
        return None
    settings = settings_for(session, item.team_id)
    currency = (item.currency or settings.base_currency).upper()
    try:
        base_amount = exchange_rates.convert(session, Decimal(amount), currency, settings.base_currency, on)
    except exchange_rates.NoRate:
        base_amount = None
    threshold = item.team.approval_threshold if item.team is not None else None
    return Stake(Decimal(amount), currency, base_amount, settings.base_currency,
                 None if threshold is None else Decimal(threshold))


def needs_approval(session, item, on=None):
    if item.type not in APPROVAL_TYPES:
        return False
    at_stake = stake(session, item, on)
    return at_stake is not None and at_stake.over_threshold
