"""Checks of a return: the order number, the return window, the approval limit, repeat returns."""
import re
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from queue_app.models import WorkItem
from queue_app.services.approvals import stake
from queue_app.services.checks.rules.base import CheckOutcome, check

MAX_LINKED = 20


def _local_day(item, moment):
    """The calendar day of `moment` where the team works (a return asked at 23:30 in Sydney is that day)."""
    calendar = item.team.calendar if item.team is not None else None
    try:
        zone = ZoneInfo(calendar.timezone) if calendar is not None and calendar.timezone else None
    except (ZoneInfoNotFoundError, ValueError):
        zone = None
    return moment.astimezone(zone).date() if zone else moment.date()


def normalised_order_number(value):
    return (value or "").strip().upper()


@check("order_number_format", title="Order number")
def order_number_format(ctx):
    number = normalised_order_number(ctx.item.order_number)
    pattern = ctx.settings.order_number_format
    if not number:
        return CheckOutcome("failed", "No order number: ask the requester for it")
    if not re.fullmatch(pattern, number):
        return CheckOutcome("failed", f"The order number {number} does not match the format {pattern}",
                            {"format": pattern})
    return CheckOutcome("passed", f"The order number {number} is in the expected format", {"format": pattern})


@check("return_window", title="Return window")
def return_window(ctx):
    """Counted from the purchase to the day the return was asked for, so a re-run later gives the same answer."""
    item = ctx.item
    days = ctx.settings.return_window_days
    if item.purchase_date is None:
        return CheckOutcome("warning", "No purchase date: the return window cannot be checked",
                            {"window_days": days})
    asked_on = _local_day(item, item.created_at or ctx.now)
    elapsed = (asked_on - item.purchase_date).days
    last_day = item.purchase_date + timedelta(days=days)
    data = {"window_days": days, "days_since_purchase": elapsed, "last_day": last_day.isoformat(),
            "asked_on": asked_on.isoformat()}
    if elapsed < 0:
        return CheckOutcome("failed", f"The purchase date {item.purchase_date.isoformat()} is after the day the "
                                      f"return was asked for", data)
    if elapsed > days:
        return CheckOutcome("failed", f"Outside the {days}-day return window: bought "
                                      f"{item.purchase_date.isoformat()}, {elapsed} days before the request "
                                      f"(last day {last_day.isoformat()})", data)
    return CheckOutcome("passed", f"Inside the {days}-day return window ({elapsed} days since purchase)", data)


def approval_outcome(ctx, what):
    """Shared by returns and discrepancy fixes: does resolving this need a second person?"""
    at_stake = stake.stake(ctx.session, ctx.item, ctx.now.date())
    if at_stake is None:
        return CheckOutcome("passed", f"No {what} given: nothing to approve")
    data = {**at_stake.as_data(), "requires_approval": at_stake.over_threshold}
    amount = f"{at_stake.amount:.2f} {at_stake.currency}"
    if at_stake.threshold is None:
        return CheckOutcome("passed", f"The team has no approval limit; {amount} needs no approval", data)
    limit = f"{at_stake.threshold:.2f} {at_stake.base_currency}"
    if at_stake.base_amount is None:
        return CheckOutcome("warning", f"No exchange rate converts {at_stake.currency} to {at_stake.base_currency}; "
                                       f"resolving {amount} will need approval", data)
    converted = "" if at_stake.currency == at_stake.base_currency else \
        f" ({at_stake.base_amount:.2f} {at_stake.base_currency})"
    if at_stake.over_threshold:
        return CheckOutcome("warning", f"{amount}{converted} is over the team's limit of {limit}: resolving it "
                                       f"needs approval by a supervisor or checker", data)
    return CheckOutcome("passed", f"{amount}{converted} is within the team's limit of {limit}", data)


@check("return_approval", mandatory=False, title="Approval limit")
def return_approval(ctx):
    return approval_outcome(ctx, "amount")


@check("duplicate_return", mandatory=False, title="Other returns on the order")
def duplicate_return(ctx):
    number = normalised_order_number(ctx.item.order_number)
    if not number:
        return CheckOutcome("passed", "No order number to compare")
    # Spellings as typed, upper and lower case: an IN list keeps the indexed lookup on order_number.
    spellings = sorted({ctx.item.order_number.strip(), number, number.lower()})
    refs = ctx.session.scalars(
        sa.select(WorkItem.ref).where(WorkItem.order_number.in_(spellings), WorkItem.type == "return",
                                      WorkItem.id != ctx.item.id)
        .order_by(WorkItem.id).limit(MAX_LINKED)).all()
    if not refs:
        return CheckOutcome("passed", f"No other return on order {number}")
    return CheckOutcome("warning", f"Another return on order {number}: {', '.join(refs)}", {"related_refs": refs})
