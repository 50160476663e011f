"""What an item puts at stake, and whether resolving it needs a second person (maker-checker).

The stake is the money a resolution moves: a return's amount, a discrepancy fix's
|expected - actual|. It is the largest such amount the item has carried since it was created
or last approved, in any currency and in any team: lowering, clearing or negating an amount,
or changing type, currency or team, never lowers it. Each amount is remembered with its
currency and the team it was carried in (WorkItem.stake_history, kept by the mapper events
below on every write of the item, whichever path made it), and each is measured against that
team's threshold, converted to that team's base currency.

Resolving needs a checker when any remembered amount is over its team's threshold, or when no
exchange rate converts it, or when a return or discrepancy fix that carried an amount has none
now: a person must look. The gate (services.items.state) asks this before any item is
resolved, so this module sits below the gate and imports nothing above it.
"""
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from queue_app.models import Team, WorkItem
from queue_app.services.checks import exchange_rates
from queue_app.services.checks.settings import settings_for

APPROVAL_TYPES = ("return", "discrepancy_fix")
# What an approval is bound to: change any of these and the approval is void.
SNAPSHOT_FIELDS = ("type", "team_id", "amount", "expected_amount", "actual_amount", "currency")


@dataclass(frozen=True)
class Stake:
    """The money a resolution moves, in its currency and in the team's base currency."""

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


def amount_at_stake(type, amount, expected_amount, actual_amount):
    """The money one set of values moves, or None (not a money type, or not given)."""
    if type == "return":
        return None if amount is None else abs(Decimal(amount))
    if type == "discrepancy_fix" and expected_amount is not None and actual_amount is not None:
        return abs(Decimal(expected_amount) - Decimal(actual_amount))
    return None


def _current(item):
    return amount_at_stake(item.type, item.amount, item.expected_amount, item.actual_amount)


def carried(item):
    """[(amount, currency or None, team id)] of everything the item carried since creation or
    its last approval, its current values included."""
    entries = [(Decimal(a), c, t) for a, c, t in (item.stake_history or [])]
    now = _current(item)
    if now is not None:
        entries.append((now, item.currency, item.team_id))
    return entries


def _measure(session, amount, currency, team_id, on):
    team = session.get(Team, team_id) if team_id is not None else None
    settings = settings_for(session, team_id)
    currency = (currency or settings.base_currency).upper()
    try:
        base_amount = exchange_rates.convert(session, Decimal(amount), currency, settings.base_currency, on)
    except exchange_rates.NoRate:
        base_amount = None
    threshold = team.approval_threshold if team is not None else None
    return Stake(Decimal(amount), currency, base_amount, settings.base_currency,
                 None if threshold is None else Decimal(threshold))


def stake(session, item, on=None):
    """The Stake that decides: the first remembered amount over its threshold, else the largest
    one (in its team's base currency); None when the item never carried money."""
    measured = [_measure(session, *entry, on) for entry in carried(item)]
    if not measured:
        return None
    over = [s for s in measured if s.over_threshold]
    if over:
        return max(over, key=lambda s: (s.base_amount is None, s.base_amount or 0))
    return max(measured, key=lambda s: s.base_amount or 0)


def needs_approval(session, item, on=None):
    at_stake = stake(session, item, on)
    if at_stake is None:
        return False
    if at_stake.over_threshold:
        return True
    if item.type in APPROVAL_TYPES and _current(item) is None:
        # It carried money and now says none: fail closed where the team has a limit at all.
        return any(_measure(session, *entry, on).threshold is not None for entry in carried(item))
    return False


def snapshot(item):
    """What an approval is bound to (SNAPSHOT_FIELDS as plain JSON values)."""
    return {name: None if getattr(item, name) is None else str(getattr(item, name)) for name in SNAPSHOT_FIELDS}


def changed_since(item, approved):
    """The SNAPSHOT_FIELDS whose value differs from the snapshot `approved`, in order."""
    now = snapshot(item)
    return [name for name in SNAPSHOT_FIELDS if now[name] != approved.get(name)]


def approved(item):
    """After an approval: what it approved is the new starting point of the item's stake."""
    now = _current(item)
    item.stake_history = [] if now is None else [[str(now), item.currency, item.team_id]]


# --- remembering what was carried, on every write of a work item ------------------------------

_WATCHED = ("type", "team_id", "amount", "expected_amount", "actual_amount", "currency")


@sa.event.listens_for(WorkItem, "before_update")
def _remember_before_update(mapper, connection, item):
    """An update that changes money, type or team appends what the item carried before it (the
    current values are counted by `carried` until the next change)."""
    state = sa.inspect(item)
    histories = {name: state.attrs[name].history for name in _WATCHED}
    if not any(h.has_changes() for h in histories.values()):
        return
    before = {name: _committed(h, getattr(item, name)) for name, h in histories.items()}
    amount = amount_at_stake(before["type"], before["amount"], before["expected_amount"], before["actual_amount"])
    if amount is None:
        return
    entry = [str(amount), before["currency"], before["team_id"]]
    history = list(item.stake_history or [])
    if entry not in history:
        item.stake_history = history + [entry]


def _committed(history, current):
    """The value an attribute had before this flush's change."""
    if history.deleted:
        return history.deleted[0]
    if history.unchanged:
        return history.unchanged[0]
    return current
