"""The work item service: creation, state machine, assignment, notes, replies, events."""
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from queue_app.models import Event, Message, OutboxJob, RoutingRule
from queue_app.services.errors import Conflict, Invalid, NotFound, PermissionDenied
from queue_app.services.items import lifecycle
from queue_app.services.items import state as items_state

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def kinds(session, item):
    return [e.kind for e in session.scalars(sa.select(Event).where(Event.work_item_id == item.id).order_by(Event.id))]


def test_create_sets_reference_sla_events_and_outbox_job(session, make_team, make_user):
    team = make_team(name="Returns", work_types=["return"])
    actor = make_user(teams=[team], role="supervisor")
    item = lifecycle.create_item(session, actor=actor, source="api", type="return", subject="Broken kettle",
                                  fields={"order_number": "ORD-77", "amount": "12.50", "currency": "eur"}, now=NOW)
    assert item.ref == f"BO-{item.id:06d}"
    assert item.team is team and item.status == "new" and item.priority == "normal"
    assert str(item.amount) == "12.50" and item.currency == "EUR"
    assert item.first_response_due == NOW + timedelta(minutes=240)
    assert item.resolution_due == NOW + timedelta(minutes=2880)
    assert item.sla_next_due == item.first_response_due
    assert kinds(session, item) == ["created", "sla_set"]
    jobs = {job.job_path: job for job in session.scalars(sa.select(OutboxJob))}
    assert set(jobs) == {"workers.checks.run_checks", "workers.sla_timers.fire_sla_timer"}
    assert jobs["workers.checks.run_checks"].args[0] == item.id and jobs["workers.checks.run_checks"].enqueued_at is None
    timer = jobs["workers.sla_timers.fire_sla_timer"]
    assert timer.args == [item.id, item.sla_version]
    assert timer.run_at == item.sla_next_check_at == NOW + timedelta(minutes=180)  # 75% of the first response


def test_create_validates_type_specific_fields(session, make_team):
    make_team(work_types=["return"])
    with pytest.raises(Invalid) as err:
        lifecycle.create_item(session, actor=None, source="api", type="return", subject="x",
                               fields={"amount": 12.5, "colour": "red"})
    assert set(err.value.fields) == {"fields.order_number", "fields.amount", "fields.colour"}
    assert "decimal string" in err.value.fields["fields.amount"]


def test_routing_rule_sets_team_type_and_priority(session, make_team):
    make_team(name="General", work_types=["general"])
    returns = make_team(name="Returns", work_types=["return"])
    session.add(RoutingRule(name="refunds", position=1, keywords=["refund"], set_type="return",
                            set_team_id=returns.id, set_priority="high"))
    item = lifecycle.create_item(session, actor=None, source="email", subject="Where is my REFUND?",
                                  sender="a@example.com", require_fields=False)
    assert (item.type, item.team.name, item.priority) == ("return", "Returns", "high")
    assert "routed" in kinds(session, item)


def test_legal_and_illegal_transitions(session, make_team, make_user, make_item):
    team = make_team()
    exec_ = make_user(teams=[team])
    item = make_item(team=team, assignee=exec_, actor=make_user(teams=[team], role="supervisor"))
    lifecycle.change_status(session, item, "open", actor=exec_, now=NOW)
    lifecycle.change_status(session, item, "resolved", actor=exec_, now=NOW)
    with pytest.raises(Invalid, match="cannot change .* from resolved to pending_customer"):
        lifecycle.change_status(session, item, "pending_customer", actor=exec_)
    lifecycle.change_status(session, item, "closed", actor=exec_)
    for status in ("open", "resolved", "new"):
        with pytest.raises(Invalid):
            lifecycle.change_status(session, item, status, actor=exec_)
    with pytest.raises(Invalid, match="unknown status"):
        lifecycle.change_status(session, item, "done", actor=exec_)
    changes = [e.data for e in session.scalars(sa.select(Event).where(Event.kind == "status_changed"))]
    assert [(c["from"], c["to"]) for c in changes] == [("new", "open"), ("open", "resolved"), ("resolved", "closed")]


def test_pending_status_pauses_and_resumes_the_clock(session, make_team, make_user, make_item):
    team = make_team()
    sup = make_user(teams=[team], role="supervisor")
    item = make_item(team=team, actor=sup, now=NOW)
    due = item.resolution_due
    lifecycle.change_status(session, item, "pending_customer", actor=sup, now=NOW + timedelta(hours=1))
    assert item.sla_state == "paused" and item.sla_next_due is None
    lifecycle.change_status(session, item, "open", actor=sup, now=NOW + timedelta(hours=3))
    assert item.resolution_due == due + timedelta(hours=2)
    assert item.sla_state == "on_track"


def test_resolution_sets_met_or_breached(session, make_team, make_user, make_item):
    team = make_team()
    sup = make_user(teams=[team], role="supervisor")
    on_time = make_item(team=team, actor=sup, now=NOW)
    late = make_item(team=team, actor=sup, now=NOW)
    lifecycle.change_status(session, on_time, "resolved", actor=sup, now=NOW + timedelta(hours=1))
    lifecycle.change_status(session, late, "resolved", actor=sup, now=NOW + timedelta(days=3))
    assert (on_time.sla_state, late.sla_state) == ("met", "breached")


def test_assignment_rules(session, make_team, make_user, make_item):
    team, other = make_team(), make_team()
    sup = make_user(teams=[team], role="supervisor")
    exec_a, exec_b = make_user(teams=[team]), make_user(teams=[team])
    outsider = make_user(teams=[other])
    item = make_item(team=team, actor=sup)
    with pytest.raises(Invalid, match="not a member"):
        items_state.assign(session, item, outsider, actor=sup)
    with pytest.raises(PermissionDenied):
        items_state.assign(session, item, exec_b, actor=exec_a)  # executives cannot assign others
    items_state.assign(session, item, exec_a, actor=exec_a)  # but can take an unassigned item
    with pytest.raises(PermissionDenied):
        items_state.assign(session, item, exec_b, actor=exec_b)  # not once it is taken
    with pytest.raises(NotFound):
        items_state.assign(session, item, outsider, actor=outsider)  # another team's item is invisible
    items_state.assign(session, item, exec_b, actor=sup)
    event = session.scalars(sa.select(Event).where(Event.kind == "assigned").order_by(Event.id.desc())).first()
    assert event.data == {"from": exec_a.email, "to": exec_b.email} and event.actor_id == sup.id


def test_stale_version_is_a_conflict(session, make_team, make_user, make_item):
    team = make_team()
    sup = make_user(teams=[team], role="supervisor")
    item = make_item(team=team, actor=sup)
    seen = item.version
    lifecycle.change_status(session, item, "open", actor=sup, expected_version=seen)
    with pytest.raises(Conflict):
        lifecycle.change_status(session, item, "resolved", actor=sup, expected_version=seen)


def test_note_and_reply(session, make_team, make_user, make_item):
    team = make_team()
    exec_ = make_user(teams=[team])
    item = make_item(team=team, assignee=exec_, actor=make_user(teams=[team], role="supervisor"), now=NOW)
    note = lifecycle.add_note(session, item, actor=exec_, body="  internal  ")
    assert note.kind == "note" and note.body_text == "internal"
    reply = lifecycle.add_reply(session, item, actor=exec_, body="We are on it", now=NOW + timedelta(minutes=5))
    assert reply.kind == "outbound" and reply.send_status == "queued" and reply.message_id.startswith("<")
    assert reply.subject.startswith(f"[{item.ref}]") and reply.to_addresses == "customer@example.com"
    assert item.first_responded_at == NOW + timedelta(minutes=5)
    assert item.sla_next_due == item.resolution_due
    assert session.scalar(sa.select(OutboxJob).where(OutboxJob.job_path == "workers.mail_out.send_message"))
    with pytest.raises(Invalid):
        lifecycle.add_note(session, item, actor=exec_, body="   ")
    assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 2


def test_resolve_above_threshold_needs_someone_elses_approval(session, make_team, make_user, make_item):
    from queue_app.services.approvals import decisions

    team = make_team(approval_threshold=100)
    maker = make_user(teams=[team], role="supervisor")
    checker = make_user(teams=[team], role="supervisor")
    item = make_item(team=team, actor=maker, fields={"order_number": "ORD-9", "amount": "500.00"})
    lifecycle.change_status(session, item, "resolved", actor=maker)
    assert item.status == "awaiting_approval"
    with pytest.raises(PermissionDenied, match="their own"):
        decisions.decide(session, item, actor=maker, approve=True)
    decisions.decide(session, item, actor=checker, approve=True, comment="ok")
    assert item.status == "resolved"
