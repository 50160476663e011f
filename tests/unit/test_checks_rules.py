"""Checks of returns, discrepancy fixes and escalations: formats, the return window, tolerance
(absolute and percent) with currency conversion through the rates table, approval limits,
repeat returns linking to each other, and an escalation becoming urgent."""
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from queue_app.models import Event, WorkItem
from queue_app.services.approvals import decisions, stake
from queue_app.services.checks import exchange_rates as checks_exchange_rates
from queue_app.services.checks import runner
from queue_app.services.checks import settings as checks_settings
from queue_app.services.errors import Invalid
from queue_app.services.items import lifecycle, state
from queue_app.services.sla import policies
from tests import factories

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def run(session, item, now=NOW, tag="1"):
    results = runner.run_checks(session, item.id, run_key=f"test-{tag}", now=now)
    return {r.name: r for r in results}


def reload(session, item):
    session.expire_all()
    return session.get(WorkItem, item.id)


@pytest.fixture
def returns_team(make_team):
    return make_team(name="Returns", work_types=["return"], approval_threshold=Decimal("500.00"))


@pytest.fixture
def make_return(returns_team, make_item):
    def make(created=NOW, **fields):
        values = {"order_number": "ORD-100234", "purchase_date": "2026-11-01", "amount": "49.90", "currency": "EUR",
                  **fields}
        return make_item(team=returns_team, type="return", fields=values, now=created)
    return make


# --- returns --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("number, status", [("ORD-100234", "passed"), ("ord-100234", "passed"),
                                            ("WEB-2026-0042", "passed"), ("100234", "failed"), ("ORD-12", "failed")])
def test_order_number_format(session, make_return, number, status):
    result = run(session, make_return(order_number=number))["order_number_format"]
    assert result.status == status, result.message


def test_order_number_format_is_configurable_per_team(session, returns_team, make_return):
    checks_settings.update_settings(session, returns_team, order_number_format=r"^SHOP\d{6}$")
    assert run(session, make_return(order_number="SHOP123456"))["order_number_format"].status == "passed"
    result = run(session, make_return(order_number="ORD-100234"))["order_number_format"]
    assert result.status == "failed" and result.message == (
        r"The order number ORD-100234 does not match the format ^SHOP\d{6}$")


@pytest.mark.parametrize("purchased, status", [
    ("2026-11-23", "passed"), ("2026-10-24", "passed"),  # 30 days before the request: the last day
    ("2026-10-23", "failed"), ("2025-01-01", "failed"), ("2026-11-24", "failed")])
def test_return_window_counts_from_purchase_to_request(session, make_return, purchased, status):
    result = run(session, make_return(purchase_date=purchased))["return_window"]
    assert result.status == status, result.message


def test_the_return_window_is_judged_on_the_request_day_even_when_rerun_later(session, make_return):
    item = make_return(purchase_date="2026-10-24")

    result = run(session, item, now=NOW + timedelta(days=90))["return_window"]

    assert result.status == "passed"
    assert result.data == {"window_days": 30, "days_since_purchase": 30, "last_day": "2026-11-23",
                           "asked_on": "2026-11-23"}


def test_the_return_window_is_a_team_setting(session, returns_team, make_return):
    checks_settings.update_settings(session, returns_team, return_window_days=14)
    result = run(session, make_return(purchase_date="2026-11-01"))["return_window"]
    assert result.status == "failed"
    assert result.message == ("Outside the 14-day return window: bought 2026-11-01, 22 days before the request "
                              "(last day 2026-11-15)")


def test_a_missing_purchase_date_is_a_warning(session, make_return):
    result = run(session, make_return(purchase_date=None))["return_window"]
    assert (result.status, result.message) == ("warning", "No purchase date: the return window cannot be checked")


def test_an_amount_over_the_team_limit_needs_approval(session, make_return):
    within = run(session, make_return(amount="500.00"))["return_approval"]
    over = run(session, make_return(amount="500.01"))["return_approval"]

    assert within.status == "passed" and within.data["requires_approval"] is False
    assert over.status == "warning" and over.data["requires_approval"] is True
    assert over.message == ("500.01 EUR is over the team's limit of 500.00 EUR: resolving it needs approval by a "
                            "supervisor or checker")


def test_a_foreign_amount_is_converted_before_comparing_with_the_limit(session, make_return):
    checks_exchange_rates.set_rate(session, "USD", "EUR", "0.92", date(2026, 1, 1))
    under = run(session, make_return(amount="540.00", currency="USD"))["return_approval"]  # 496.80 EUR
    over = run(session, make_return(amount="550.00", currency="USD"))["return_approval"]  # 506.00 EUR

    assert under.status == "passed" and under.data["base_amount"] == "496.80"
    assert over.status == "warning" and over.data["base_amount"] == "506.00"
    assert "550.00 USD (506.00 EUR) is over the team's limit of 500.00 EUR" in over.message


def test_another_return_on_the_same_order_is_a_warning_linking_to_it(session, make_return):
    first = make_return(order_number="ORD-555000")
    second = make_return(order_number="ord-555000")
    unrelated = make_return(order_number="ORD-555001")

    result = run(session, second)["duplicate_return"]

    assert result.status == "warning"
    assert result.message == f"Another return on order ORD-555000: {first.ref}"
    assert result.data == {"related_refs": [first.ref]}
    assert run(session, first)["duplicate_return"].data == {"related_refs": [second.ref]}
    assert run(session, unrelated)["duplicate_return"].status == "passed"
    assert reload(session, second).needs_attention is False


# --- discrepancy fixes ----------------------------------------------------------------------------------

@pytest.fixture
def payments_team(make_team):
    return make_team(name="Payments", work_types=["discrepancy_fix"], approval_threshold=Decimal("100.00"))


@pytest.fixture
def make_fix(payments_team, make_item):
    def make(expected, actual, currency="EUR"):
        return make_item(team=payments_team, type="discrepancy_fix", now=NOW, fields={
            "account": "ACC-1", "expected_amount": expected, "actual_amount": actual, "currency": currency})
    return make


def test_a_difference_inside_the_absolute_tolerance_passes_and_suggests_resolving(session, make_fix):
    result = run(session, make_fix("100.00", "99.10"))["discrepancy_tolerance"]

    assert result.status == "passed"
    assert result.data["suggestion"] == "resolve" and result.data["within"] == "absolute"
    assert result.data["difference"] == "-0.90"
    assert result.message.startswith("Difference -0.90 EUR, 0.9% of the expected amount is inside the tolerance")


def test_a_difference_inside_the_percent_tolerance_passes(session, make_fix):
    result = run(session, make_fix("10000.00", "10040.00"))["discrepancy_tolerance"]  # 40.00 = 0.4%

    assert result.status == "passed" and result.data["within"] == "percent"
    assert result.data["percent"] == "0.400"


def test_a_difference_outside_both_tolerances_is_a_warning_to_investigate(session, make_fix):
    result = run(session, make_fix("100.00", "98.50"))["discrepancy_tolerance"]  # 1.50 and 1.5%

    assert result.status == "warning" and result.data["suggestion"] == "investigate"
    assert session.get(WorkItem, result.work_item_id).needs_attention is False


def test_tolerances_are_team_settings_and_decimal_exact(session, payments_team, make_fix):
    checks_settings.update_settings(session, payments_team, tolerance_absolute="0.30", tolerance_percent="0")
    exact = run(session, make_fix("0.10", "0.40"))["discrepancy_tolerance"]  # 0.30: a float would say 0.30000000000000004
    over = run(session, make_fix("0.10", "0.41"))["discrepancy_tolerance"]

    assert exact.status == "passed" and exact.data["difference"] == "0.30"
    assert over.status == "warning"


def test_other_currencies_are_converted_through_the_rates_table(session, make_fix):
    checks_exchange_rates.set_rate(session, "USD", "EUR", "0.90", date(2026, 1, 1))
    checks_exchange_rates.set_rate(session, "USD", "EUR", "0.40", date(2027, 1, 1))  # not valid yet
    inside = run(session, make_fix("100.00", "101.10", "USD"))["discrepancy_tolerance"]  # 1.10 USD = 0.99 EUR
    outside = run(session, make_fix("100.00", "101.20", "USD"))["discrepancy_tolerance"]  # 1.08 EUR, 1.2%

    assert inside.status == "passed" and inside.data["difference_base"] == "0.99"
    assert inside.data["within"] == "absolute"
    assert "1.10 USD (0.99 EUR)" in inside.message
    assert outside.status == "warning" and outside.data["difference_base"] == "1.08"


def test_the_inverse_rate_is_used_when_only_the_opposite_pair_is_known(session, make_fix):
    checks_exchange_rates.set_rate(session, "EUR", "GBP", "0.80", date(2026, 1, 1))
    result = run(session, make_fix("500.00", "500.80", "GBP"))["discrepancy_tolerance"]  # 0.80 GBP = 1.00 EUR

    assert result.status == "passed" and result.data["difference_base"] == "1.00"


def test_without_a_rate_the_absolute_tolerance_cannot_be_checked(session, make_fix):
    result = run(session, make_fix("500.00", "510.00", "CHF"))["discrepancy_tolerance"]

    assert result.status == "failed"
    assert "no exchange rate from CHF to EUR on 2026-11-23" in result.message
    assert session.get(WorkItem, result.work_item_id).needs_attention is True


def test_a_difference_above_the_threshold_requires_approval_to_resolve(session, make_fix, make_user,
                                                                          payments_team):
    checks_exchange_rates.set_rate(session, "USD", "EUR", "0.90", date(2026, 1, 1))
    small = make_fix("1000.00", "1110.00", "USD")  # 110 USD = 99.00 EUR
    large = make_fix("1000.00", "1120.00", "USD")  # 120 USD = 108.00 EUR

    assert run(session, small)["discrepancy_approval"].status == "passed"
    result = run(session, large)["discrepancy_approval"]
    assert result.status == "warning" and result.data["requires_approval"] is True

    maker = make_user(teams=[payments_team])
    state.assign(session, large, maker, actor=maker)
    lifecycle.change_status(session, large, "resolved", actor=maker, now=NOW)
    assert large.status == "awaiting_approval"
    approval = decisions.pending_approval(session, large)
    assert approval.data == {"amount": "120.00", "currency": "USD", "base_amount": "108.00", "base_currency": "EUR",
                             "threshold": "100.00", "from_status": "new",
                             # bound to what was approved, and what the checker sees
                             "snapshot": {"type": "discrepancy_fix", "team_id": str(payments_team.id),
                                          "amount": None, "expected_amount": "1000.00",
                                          "actual_amount": "1120.00", "currency": "USD"},
                             "carried": [["120.00", "USD", payments_team.id]]}
    state.assign(session, small, maker, actor=maker)
    lifecycle.change_status(session, small, "resolved", actor=maker, now=NOW)
    assert small.status == "resolved"


def test_an_amount_no_rate_converts_needs_approval(session, make_fix, make_user, payments_team):
    item = make_fix("1000.00", "1001.00", "JPY")
    assert stake.needs_approval(session, item) is True
    assert run(session, item)["discrepancy_approval"].status == "warning"


# --- escalations ----------------------------------------------------------------------------------------

@pytest.fixture
def make_escalation(make_item, returns_team):
    def make(related_ref=None, priority="normal"):
        fields = {"severity": "high", **({"related_ref": related_ref} if related_ref else {})}
        return make_item(team=returns_team, type="escalation", fields=fields, priority=priority, now=NOW)
    return make


def test_the_related_item_must_exist(session, make_escalation, make_return):
    related = make_return()
    missing = run(session, make_escalation())["related_item"]
    unknown = run(session, make_escalation("BO-999999"))["related_item"]
    found = run(session, make_escalation(related.ref))["related_item"]

    assert (missing.status, unknown.status, found.status) == ("failed", "failed", "passed")
    assert unknown.message == "There is no item BO-999999"
    assert found.data == {"related_refs": [related.ref]}


def test_an_escalation_of_a_breached_item_becomes_urgent_with_an_event(session, make_escalation, make_return):
    factories.make_policy(session, name="Urgent", match_priority="urgent", first_response_minutes=30,
                          resolution_minutes=240)
    breached = make_return(created=NOW - timedelta(days=30))
    assert policies.state_at(breached, NOW) == "breached"
    item = make_escalation(breached.ref)
    version = item.version

    result = run(session, item)["related_item_sla"]

    assert result.status == "warning"
    assert result.message == f"{breached.ref} has breached its SLA: this escalation becomes urgent"
    item = reload(session, item)
    assert item.priority == "urgent" and item.version > version
    events = session.scalars(sa.select(Event).where(Event.work_item_id == item.id).order_by(Event.id)).all()
    raised = [e for e in events if e.kind == "priority_raised"]
    assert len(raised) == 1 and raised[0].actor_label == "worker"
    assert raised[0].data == {"from": "normal", "to": "urgent", "related_ref": breached.ref,
                              "reason": "the related item has breached its SLA"}
    recalculated = [e for e in events if e.kind == "sla_recalculated"]
    assert [e.data["policy"] for e in recalculated] == ["Urgent"]  # the SLA follows the new priority

    again = run(session, item, tag="2")["related_item_sla"]  # a re-run raises nothing twice
    assert again.message.endswith("this escalation is urgent")
    assert len(session.scalars(sa.select(Event).where(Event.work_item_id == item.id,
                                                      Event.kind == "priority_raised")).all()) == 1


def test_an_escalation_of_an_item_on_track_stays_as_it_is(session, make_escalation, make_return):
    item = make_escalation(make_return().ref)

    result = run(session, item)["related_item_sla"]

    assert result.status == "passed" and reload(session, item).priority == "normal"


# --- settings and rates -----------------------------------------------------------------------------

def test_settings_default_until_a_team_overrides_them(session, returns_team):
    assert checks_settings.settings_for(session, returns_team.id) == checks_settings.DEFAULTS
    settings = checks_settings.update_settings(session, returns_team, return_window_days="45", base_currency="usd")
    assert (settings.return_window_days, settings.base_currency) == (45, "USD")
    assert settings.tolerance_absolute == checks_settings.DEFAULTS.tolerance_absolute
    assert checks_settings.update_settings(session, returns_team, return_window_days=None).return_window_days == 30


@pytest.mark.parametrize("name, value", [("return_window_days", "-1"), ("base_currency", "EURO"),
                                         ("tolerance_percent", "abc"), ("order_number_format", "(unclosed"),
                                         ("document_number_formats", {"visa": "x"})])
def test_bad_settings_are_refused(session, returns_team, name, value):
    with pytest.raises(Invalid) as refused:
        checks_settings.update_settings(session, returns_team, **{name: value})
    assert name in refused.value.fields or any(key.startswith(name) for key in refused.value.fields)


def test_rates_apply_from_their_day(session):
    checks_exchange_rates.set_rate(session, "usd", "eur", "0.90", date(2026, 1, 1))
    checks_exchange_rates.set_rate(session, "USD", "EUR", "0.95", date(2026, 6, 1))

    assert checks_exchange_rates.convert(session, Decimal("10"), "USD", "EUR", date(2026, 5, 31)) == Decimal("9.00")
    assert checks_exchange_rates.convert(session, Decimal("10"), "USD", "EUR", date(2026, 6, 1)) == Decimal("9.50")
    with pytest.raises(checks_exchange_rates.NoRate):
        checks_exchange_rates.convert(session, Decimal("10"), "USD", "EUR", date(2025, 12, 31))
    with pytest.raises(Invalid):
        checks_exchange_rates.set_rate(session, "USD", "EUR", "0")
