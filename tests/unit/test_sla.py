"""SLA policy matching and state."""
from datetime import datetime, timedelta, timezone

from queue_app.services import sla
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
    assert sla.state_at(item, NOW + timedelta(minutes=74)) == "on_track"
    assert sla.state_at(item, NOW + timedelta(minutes=75)) == "at_risk"
    assert sla.state_at(item, NOW + timedelta(minutes=100)) == "breached"
    sla.on_first_response(item, NOW + timedelta(minutes=10))
    assert sla.state_at(item, NOW + timedelta(minutes=100)) == "on_track"
    assert sla.remaining_minutes(item, NOW + timedelta(minutes=100)) == 900
