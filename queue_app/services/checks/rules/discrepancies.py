"""Checks of a discrepancy fix: is the difference small enough to resolve, and who must approve it.

Money is Decimal from the column to the message: no float ever touches an amount. The
absolute tolerance is in the team's base currency, so a difference in another currency is
converted through the rates table first; the percent tolerance is of the expected amount
and needs no conversion.
"""
from decimal import Decimal

from queue_app.services.checks import exchange_rates
from queue_app.services.checks.rules.base import CheckOutcome, check
from queue_app.services.checks.rules.returns import approval_outcome

HUNDRED = Decimal(100)


def _money(value, currency):
    return f"{value:.2f} {currency}"


@check("discrepancy_tolerance", title="Tolerance")
def discrepancy_tolerance(ctx):
    item, settings = ctx.item, ctx.settings
    if item.expected_amount is None or item.actual_amount is None or not item.currency:
        return CheckOutcome("failed", "Expected amount, actual amount and currency are all needed")
    expected, actual = Decimal(item.expected_amount), Decimal(item.actual_amount)
    currency, base = item.currency.upper(), settings.base_currency
    difference = actual - expected
    size = abs(difference)
    percent = None if expected == 0 else (size / abs(expected) * HUNDRED).quantize(Decimal("0.001"))
    tolerance_pct, tolerance_abs = settings.tolerance_percent, settings.tolerance_absolute
    data = {"difference": f"{difference:.2f}", "currency": currency, "percent": None if percent is None else str(percent),
            "tolerance_absolute": f"{tolerance_abs:.2f}", "tolerance_percent": str(tolerance_pct),
            "base_currency": base}
    if size == 0:
        return CheckOutcome("passed", "No difference: the amounts agree; resolve the item",
                            {**data, "suggestion": "resolve"})
    within_percent = percent is not None and percent <= tolerance_pct
    try:
        size_base = exchange_rates.convert(ctx.session, size, currency, base, ctx.now.date())
    except exchange_rates.NoRate as exc:
        if within_percent:
            size_base = None
        else:
            return CheckOutcome("failed", f"Cannot compare with the tolerance: {exc}; add the rate and re-run",
                                {**data, "missing_rate": [currency, base]})
    data["difference_base"] = None if size_base is None else f"{size_base:.2f}"
    within_absolute = size_base is not None and size_base <= tolerance_abs
    shown = _money(difference, currency)
    if size_base is not None and currency != base:
        shown += f" ({_money(size_base, base)})"
    if percent is not None:
        shown += f", {percent.normalize():f}% of the expected amount"
    rule = f"tolerance {_money(tolerance_abs, base)} or {tolerance_pct.normalize():f}%"
    if within_absolute or within_percent:
        return CheckOutcome("passed", f"Difference {shown} is inside the {rule}: suggest resolving it as a "
                                      f"tolerated difference", {**data, "suggestion": "resolve",
                                                                "within": "absolute" if within_absolute else "percent"})
    return CheckOutcome("warning", f"Difference {shown} is outside the {rule}: investigate before resolving",
                        {**data, "suggestion": "investigate"})


@check("discrepancy_approval", mandatory=False, title="Approval limit")
def discrepancy_approval(ctx):
    return approval_outcome(ctx, "difference")
