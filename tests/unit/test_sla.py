"""SLA policy matching and state."""
from datetime import datetime, timedelta, timezone

from queue_app.services.sla import policies
from tests.factories import make_policy

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def test_most_specific_policy_wins(session, make_team, make_item):
    team = make_team()
    make_policy(session, first_response_minutes=100, resolution_minutes=1000)
    make_policy(session, match_type="return", first_response_minutes=50, resolution_minutes=500)
    make_policy(session, match_type="return", match_priority="urgent", match_team_id=team.id,
                first_response_minutes=10, resolution_minutes=60)
    make_policy(session, match_type="return", match_priority="urgent", match_team_id=team.id, active=False,
                first_response_minutes=1, resolution_minutes=2)
    urgent = make_item(team=team, priority="urgent", now=NOW)
    normal = make_item(team=team, now=NOW)
    general = make_item(team=team, type="general", now=NOW)
    assert urgent.first_response_due == NOW + timedelta(minutes=10)
    assert urgent.resolution_due == NOW + timedelta(minutes=60)
    assert normal.first_response_due == NOW + timedelta(minutes=50)
    assert general.resolution_due == NOW + timedelta(minutes=1000)


def test_state_moves_from_on_track_to_at_risk_to_breached(session, make_team, make_item):
    team = make_team()
    make_policy(session, first_response_minutes=100, resolution_minutes=1000, warn_at_percent=75)
    item = make_item(team=team, now=NOW)
    assert policies.state_at(item, NOW + timedelta(minutes=74)) == "on_track"
    assert policies.state_at(item, NOW + timedelta(minutes=75)) == "at_risk"
    assert policies.state_at(item, NOW + timedelta(minutes=100)) == "breached"
    policies.on_first_response(session, item, NOW + timedelta(minutes=10))
    assert policies.state_at(item, NOW + timedelta(minutes=100)) == "on_track"
    assert policies.remaining_minutes(item, NOW + timedelta(minutes=100)) == 900


def test_pause_keeps_the_business_time_left_under_working_hours(session, make_team, make_user, make_item):
    from queue_app.models import Calendar
    from queue_app.services.items import lifecycle

    office = Calendar(name="Pune office", timezone="Asia/Kolkata",
                      hours={d: ["09:30-13:00", "14:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")})
    session.add(office)
    session.flush()
    make_policy(session, calendar_id=office.id, first_response_minutes=90, resolution_minutes=120)
    team = make_team()
    sup = make_user(teams=[team], role="supervisor")
    friday_1600_ist = datetime(2026, 11, 20, 10, 30, tzinfo=timezone.utc)
    item = make_item(team=team, actor=sup, now=friday_1600_ist)
    assert item.resolution_due == datetime(2026, 11, 20, 12, 30, tzinfo=timezone.utc)  # Friday 18:00 IST
    lifecycle.change_status(session, item, "pending_customer", actor=sup,
                             now=datetime(2026, 11, 20, 11, 30, tzinfo=timezone.utc))  # 17:00 IST, 60 min left
    monday_1000_ist = datetime(2026, 11, 23, 4, 30, tzinfo=timezone.utc)
    lifecycle.change_status(session, item, "open", actor=sup, now=monday_1000_ist)
    assert item.resolution_due == datetime(2026, 11, 23, 5, 30, tzinfo=timezone.utc)  # Monday 11:00 IST
    assert item.first_response_due == datetime(2026, 11, 23, 5, 0, tzinfo=timezone.utc)  # 30 min left
    assert policies.state_at(item, monday_1000_ist) == "on_track"  # the paused weekend does not count
    assert policies.state_at(item, datetime(2026, 11, 23, 4, 40, tzinfo=timezone.utc)) == "at_risk"  # 20 of 90 left
