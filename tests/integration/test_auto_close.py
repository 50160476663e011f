"""Resolved items close by themselves after their team's auto-close days, through the scheduler."""
from datetime import timedelta

import pytest
import sqlalchemy as sa

from queue_app.models import Event, WorkItem
from queue_app.models.base import utcnow
from queue_app.services.errors import Invalid
from queue_app.services.items import housekeeping, lifecycle
from queue_app.services.people import teams as people_teams
from workers import schedule


def resolved(session, make_item, team, executive, days_ago):
    item = make_item(team=team, type="general", assignee=executive)
    lifecycle.change_status(session, item, "resolved", actor=executive, now=utcnow() - timedelta(days=days_ago))
    return item


def test_the_scheduler_closes_resolved_items_past_their_teams_days_and_no_other(session, make_team, make_user,
                                                                                make_item):
    tidy, keeper = make_team(name="Tidy", work_types=["general"]), make_team(name="Keeper", work_types=["general"])
    tidy.auto_close_days = 7
    ana = make_user(teams=[tidy, keeper])
    old, recent = resolved(session, make_item, tidy, ana, 8), resolved(session, make_item, tidy, ana, 6)
    kept = resolved(session, make_item, keeper, ana, 300)
    reopened = resolved(session, make_item, tidy, ana, 30)
    lifecycle.change_status(session, reopened, "open", actor=ana)
    session.commit()

    assert housekeeping.due_for_closing(session) == [old.id]
    schedule._auto_close()

    session.expire_all()
    statuses = {i.id: session.get(WorkItem, i.id).status for i in (old, recent, kept, reopened)}
    assert statuses == {old.id: "closed", recent.id: "resolved", kept.id: "resolved", reopened.id: "open"}
    [event] = session.scalars(sa.select(Event).where(Event.work_item_id == old.id, Event.kind == "status_changed")
                              .order_by(Event.id.desc()).limit(1)).all()
    assert event.actor_label == "scheduler"
    assert event.data == {"from": "resolved", "to": "closed", "comment": "closed automatically 7 days after it was resolved"}
    assert housekeeping.due_for_closing(session) == []
    assert housekeeping.close_if_due(session, old.id) is False  # already closed: nothing twice


def test_an_item_reopened_after_it_was_found_due_is_not_closed(session, make_team, make_user, make_item):
    tidy = make_team(name="Tidy", work_types=["general"])
    tidy.auto_close_days = 3
    ana = make_user(teams=[tidy])
    item = resolved(session, make_item, tidy, ana, 5)
    session.commit()
    [due] = housekeeping.due_for_closing(session)
    lifecycle.change_status(session, item, "open", actor=ana, comment="the customer wrote again")
    session.commit()
    assert housekeeping.close_if_due(session, due) is False
    assert session.get(WorkItem, due).status == "open"


@pytest.mark.parametrize("days", [0, -1, 366])
def test_auto_close_days_are_checked(session, make_team, days):
    team = make_team(name="Tidy")
    with pytest.raises(Invalid) as refused:
        people_teams.save_team(session, team, name="Tidy", auto_close_days=days)
    assert "auto_close_days" in refused.value.fields
    assert people_teams.save_team(session, team, name="Tidy", auto_close_days=30).auto_close_days == 30
