"""The gate (services.items.state): every path that changes status, team or assignee gets its
events and its SLA recalculation from one place."""
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from queue_app.models import Event
from queue_app.services.approvals import decisions
from queue_app.services.errors import Invalid
from queue_app.services.items import lifecycle, state
from queue_app.services.sla import ladder
from tests.factories import make_policy

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def kinds(session, item):
    return [e.kind for e in session.scalars(sa.select(Event).where(Event.work_item_id == item.id).order_by(Event.id))]


def last(session, item, kind):
    return session.scalars(sa.select(Event).where(Event.work_item_id == item.id, Event.kind == kind)
                           .order_by(Event.id.desc())).first()


def test_an_escalation_to_another_team_is_recorded_and_takes_that_teams_policy(session, make_team, make_user,
                                                                               make_item):
    returns = make_team(name="Returns")
    escalations = make_team(name="Escalations")
    sup = make_user(teams=[returns], role="supervisor", email="sup@example.com")
    exec_ = make_user(teams=[returns, escalations], email="exec@example.com")
    make_policy(session, name="Returns", match_team_id=returns.id, first_response_minutes=60,
                resolution_minutes=6000, escalation=[
                    {"after_breach_minutes": 0, "notify": ["assignee"], "reassign_to_team": "Escalations"}])
    policy = make_policy(session, name="Escalations", match_team_id=escalations.id, first_response_minutes=30,
                         resolution_minutes=240)
    item = make_item(team=returns, actor=sup, assignee=exec_, now=NOW)
    before = kinds(session, item)

    taken = ladder.process_due(session, item, NOW + timedelta(minutes=61))

    assert taken == [("first_response", "warning", 0), ("first_response", "breach", 1)]
    # The move went through the gate: unassigned (even though exec_ is a member of both teams),
    # the team change recorded, and the SLA recalculated under the Escalations policy.
    assert item.team is escalations and item.assignee is None
    assert kinds(session, item)[len(before):] == ["sla_warning", "sla_breached", "unassigned", "reclassified",
                                                  "sla_recalculated"]
    assert last(session, item, "reclassified").data["team"] == ["Returns", "Escalations"]
    assert last(session, item, "unassigned").data == {"from": "exec@example.com", "to": None}
    assert item.sla_policy is policy
    assert item.resolution_due == NOW + timedelta(minutes=240)
    assert last(session, item, "sla_recalculated").data["policy"] == "Escalations"
    # Its next step follows the new policy (the resolution warning at 75% of 240 minutes).
    assert item.sla_next_check_at == NOW + timedelta(minutes=180)


def test_asking_for_approval_changes_the_status_through_the_gate(session, make_team, make_user, make_item):
    team = make_team(name="Refunds", approval_threshold=Decimal("100"))
    maker = make_user(teams=[team], email="maker@example.com")
    # A policy that pauses the clock while an item waits for its checker: only the gate applies it.
    make_policy(session, first_response_minutes=60, resolution_minutes=600,
                pause_statuses=["pending_customer", "pending_third_party", "awaiting_approval"])
    item = make_item(team=team, actor=maker, assignee=maker, fields={
        "order_number": "ORD-1001", "purchase_date": "2026-11-01", "amount": "500.00", "currency": "EUR",
        "reason": "Broken"}, now=NOW)
    later = NOW + timedelta(minutes=10)

    lifecycle.change_status(session, item, "resolved", actor=maker, now=later)

    assert item.status == "awaiting_approval"
    assert kinds(session, item)[-3:] == ["approval_requested", "sla_paused", "status_changed"]
    assert last(session, item, "status_changed").data["to"] == "awaiting_approval"
    assert item.sla_state == "paused" and item.sla_next_due is None
    assert item.last_activity_at == later


def test_the_gate_refuses_to_resolve_what_needs_a_checker(session, make_team, make_user, make_item):
    team = make_team(name="Refunds", approval_threshold=Decimal("100"))
    maker = make_user(teams=[team], email="maker@example.com")
    item = make_item(team=team, actor=maker, assignee=maker, fields={
        "order_number": "ORD-1001", "purchase_date": "2026-11-01", "amount": "500.00", "currency": "EUR",
        "reason": "Broken"}, now=NOW)

    with pytest.raises(Invalid, match="approval"):
        state.change_status(session, item, "resolved", actor=maker, now=NOW)
    assert item.status == "new"


def test_leaving_approval_needs_the_decision_of_that_approval(session, make_team, make_user, make_item):
    team = make_team(name="Refunds", approval_threshold=Decimal("100"))
    maker = make_user(teams=[team], email="maker@example.com")
    checker = make_user(teams=[team], role="supervisor", email="checker@example.com")
    item = make_item(team=team, actor=maker, assignee=maker, fields={
        "order_number": "ORD-1001", "purchase_date": "2026-11-01", "amount": "500.00", "currency": "EUR",
        "reason": "Broken"}, now=NOW)
    lifecycle.change_status(session, item, "resolved", actor=maker, now=NOW)
    approval = decisions.pending_approval(session, item)

    with pytest.raises(Invalid):  # still pending: nobody decided
        state.leave_approval(session, item, approval, actor=checker, now=NOW)
    decisions.decide(session, item, actor=checker, approve=True, now=NOW)
    assert item.status == "resolved" and item.sla_state in ("met", "breached")


def test_bulk_assignment_uses_the_same_rules_as_one_assignment(session, make_team, make_user, make_item):
    team = make_team(name="Returns")
    other = make_team(name="Docs")
    sup = make_user(teams=[team], role="supervisor")
    outsider = make_user(teams=[other])
    items = [make_item(team=team, actor=sup, now=NOW) for _ in range(2)]

    with pytest.raises(Invalid) as one:
        state.assign(session, items[0], outsider, actor=sup, now=NOW, check_access=False)
    with pytest.raises(Invalid) as many:
        state.assign_many(session, items, outsider, actor=sup, now=NOW, check_access=False)
    assert one.value.fields == many.value.fields == {"assignee": "not a member of the item's team"}
    assert all(i.assignee_id is None for i in items)
