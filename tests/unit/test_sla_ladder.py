"""The SLA ladder: warnings, breaches, escalation levels, exactly once each; recalculation."""
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from queue_app.models import Event, Notification, OutboxJob, SlaEscalation
from queue_app.services.items import lifecycle
from queue_app.services.sla import ladder as sla_ladder
from queue_app.services.sla import policies
from tests.factories import make_policy

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def rows(session, item):
    return [(r.target, r.stage, r.kind, r.level) for r in session.scalars(
        sa.select(SlaEscalation).where(SlaEscalation.work_item_id == item.id).order_by(SlaEscalation.id))]


def events(session, item, *kinds):
    return [e for e in session.scalars(sa.select(Event).where(Event.work_item_id == item.id).order_by(Event.id))
            if e.kind in kinds]


def setup_team(make_team, make_user):
    team = make_team(name="Returns")
    sup = make_user(teams=[team], role="supervisor", email="sup@example.com")
    exec_ = make_user(teams=[team], email="exec@example.com")
    return team, sup, exec_


def test_warning_then_breach_each_once_with_notifications(session, make_team, make_user, make_item):
    team, sup, exec_ = setup_team(make_team, make_user)
    make_policy(session, first_response_minutes=60, resolution_minutes=600, warn_at_percent=75)
    item = make_item(team=team, actor=sup, assignee=exec_, now=NOW)
    assert item.sla_next_check_at == NOW + timedelta(minutes=45)

    assert sla_ladder.process_due(session, item, NOW + timedelta(minutes=44)) == []
    assert sla_ladder.process_due(session, item, NOW + timedelta(minutes=45)) == [("first_response", "warning", 0)]
    assert item.sla_state == "at_risk" and item.sla_next_check_at == NOW + timedelta(minutes=60)
    assert sla_ladder.process_due(session, item, NOW + timedelta(minutes=46)) == []  # nothing twice

    assert sla_ladder.process_due(session, item, NOW + timedelta(minutes=61)) == [("first_response", "breach", 1)]
    assert (item.sla_state, item.escalation_level, item.priority) == ("breached", 1, "high")
    assert item.sla_next_check_at == NOW + timedelta(minutes=450)  # the resolution warning is next
    assert rows(session, item) == [("first_response", 1, "warning", 0), ("first_response", 2, "breach", 1)]
    warning, breach = events(session, item, "sla_warning", "sla_breached")
    assert warning.data["target"] == "first_response" and warning.data["notified"] == ["exec@example.com"]
    assert breach.data["level"] == 1 and breach.data["notified"] == ["exec@example.com", "sup@example.com"]
    notes = session.scalars(sa.select(Notification).order_by(Notification.id)).all()
    assert [n.to_address for n in notes] == ["exec@example.com", "exec@example.com", "sup@example.com"]
    assert "breached" in notes[-1].subject
    mail_jobs = session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == "workers.mail_out.send_notification"))
    assert sorted(j.args[0] for j in mail_jobs) == sorted(n.id for n in notes)


def test_a_late_sweep_takes_every_step_that_is_due(session, make_team, make_user, make_item):
    team, sup, exec_ = setup_team(make_team, make_user)
    make_policy(session, first_response_minutes=60, resolution_minutes=120)
    item = make_item(team=team, actor=sup, now=NOW)
    taken = sla_ladder.process_due(session, item, NOW + timedelta(hours=5), fired_by="sweep")
    assert taken == [("first_response", "warning", 0), ("first_response", "breach", 1),
                     ("resolution", "warning", 0), ("resolution", "breach", 1)]
    assert item.sla_next_check_at is None and item.escalation_level == 1
    assert {r.fired_by for r in session.scalars(sa.select(SlaEscalation))} == {"sweep"}


def test_escalation_ladder_levels_and_reassignment(session, make_team, make_user, make_item):
    team, sup, exec_ = setup_team(make_team, make_user)
    escalations = make_team(name="Escalations")
    make_policy(session, first_response_minutes=60, resolution_minutes=6000, escalation=[
        {"after_breach_minutes": 0, "notify": ["assignee"], "raise_priority": True},
        {"after_breach_minutes": 30, "notify": ["supervisors"], "reassign_to_team": "Escalations"},
    ])
    item = make_item(team=team, actor=sup, assignee=exec_, now=NOW, priority="high")
    sla_ladder.process_due(session, item, NOW + timedelta(minutes=61))
    assert (item.escalation_level, item.priority) == (1, "urgent")
    taken = sla_ladder.process_due(session, item, NOW + timedelta(minutes=91))
    assert taken == [("first_response", "escalation", 2)]
    assert item.team is escalations and item.assignee is None and item.escalation_level == 2
    [escalated] = events(session, item, "escalated")
    assert escalated.data["reassigned_to"] == "Escalations" and escalated.data["notified"] == ["sup@example.com"]


def test_a_step_claimed_elsewhere_is_not_taken_again(session, make_team, make_user, make_item):
    team, sup, _ = setup_team(make_team, make_user)
    make_policy(session, first_response_minutes=60, resolution_minutes=600)
    item = make_item(team=team, actor=sup, now=NOW)
    # Another worker recorded the warning already (its commit landed first).
    session.add(SlaEscalation(work_item_id=item.id, target="first_response", stage=1, kind="warning", level=0,
                              due_at=item.first_response_due, fired_at=NOW))
    session.flush()
    assert sla_ladder.process_due(session, item, NOW + timedelta(minutes=50)) == []
    assert events(session, item, "sla_warning") == []
    assert len(rows(session, item)) == 1


def test_paused_and_resolved_items_take_no_steps(session, make_team, make_user, make_item):
    team, sup, _ = setup_team(make_team, make_user)
    make_policy(session, first_response_minutes=60, resolution_minutes=600)
    paused = make_item(team=team, actor=sup, now=NOW)
    lifecycle.change_status(session, paused, "pending_customer", actor=sup, now=NOW + timedelta(minutes=10))
    assert paused.sla_next_check_at is None
    assert sla_ladder.process_due(session, paused, NOW + timedelta(hours=3)) == []
    lifecycle.change_status(session, paused, "open", actor=sup, now=NOW + timedelta(hours=3))
    assert paused.sla_next_check_at == NOW + timedelta(hours=3, minutes=35)  # 35 of the 45 warning minutes left
    done = make_item(team=team, actor=sup, now=NOW)
    lifecycle.change_status(session, done, "resolved", actor=sup, now=NOW + timedelta(minutes=5))
    assert done.sla_next_check_at is None and sla_ladder.process_due(session, done, NOW + timedelta(hours=30)) == []


def test_due_item_ids_only_returns_what_is_due(session, make_team, make_user, make_item):
    team, sup, _ = setup_team(make_team, make_user)
    make_policy(session, first_response_minutes=60, resolution_minutes=600)
    early = make_item(team=team, actor=sup, now=NOW - timedelta(hours=2))
    make_item(team=team, actor=sup, now=NOW)
    assert sla_ladder.due_item_ids(session, NOW) == [early.id]


def test_reclassify_recalculates_and_reschedules(session, make_team, make_user, make_item):
    team, sup, exec_ = setup_team(make_team, make_user)
    make_policy(session, first_response_minutes=240, resolution_minutes=2400)
    make_policy(session, match_priority="urgent", first_response_minutes=30, resolution_minutes=240)
    item = make_item(team=team, actor=sup, assignee=exec_, now=NOW)
    version = item.sla_version
    lifecycle.reclassify(session, item, actor=exec_, priority="urgent", now=NOW + timedelta(minutes=10))
    assert item.first_response_due == NOW + timedelta(minutes=30)
    assert item.resolution_due == NOW + timedelta(minutes=240)
    assert item.sla_version == version + 1
    assert [e.data["reason"] for e in events(session, item, "sla_recalculated")] == ["priority"]
    timers = session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == policies.TIMER_JOB)
                             .order_by(OutboxJob.id)).all()
    assert timers[-1].args == [item.id, item.sla_version]
    assert timers[-1].run_at == NOW + timedelta(minutes=22, seconds=30)


def test_recalculation_keeps_time_spent_paused(session, make_team, make_user, make_item):
    team, sup, _ = setup_team(make_team, make_user)
    policy = make_policy(session, first_response_minutes=60, resolution_minutes=600)
    item = make_item(team=team, actor=sup, now=NOW)
    lifecycle.change_status(session, item, "pending_third_party", actor=sup, now=NOW + timedelta(minutes=10))
    lifecycle.change_status(session, item, "open", actor=sup, now=NOW + timedelta(minutes=70))
    policy.resolution_minutes = 900
    assert policies.recalculate(session, item, NOW + timedelta(minutes=80)) is True
    assert item.resolution_due == NOW + timedelta(minutes=960)  # 900 + the 60 paused minutes
    assert policies.recalculate(session, item, NOW + timedelta(minutes=81)) is False
