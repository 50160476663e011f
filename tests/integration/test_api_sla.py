"""PATCH /items/<ref> (reclassify) and the item's SLA object: due times, pauses, breaches and escalation."""
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from queue_app.models import Event, WorkItem
from queue_app.models.base import utcnow
from queue_app.services.items import lifecycle
from queue_app.services.people.users import issue_api_token
from queue_app.services.sla import ladder as sla_ladder
from tests.factories import make_policy
from tests.integration.test_api import API, assert_error, auth, parse_iso


class World:
    """Returns (a supervisor, two executives) and Payments (its own supervisor), a token each."""

    def __init__(self, session, make_team, make_user):
        self.team = make_team(name="Returns", work_types=["return"])
        self.other_team = make_team(name="Payments", work_types=["discrepancy_fix"])
        self.sup = make_user(email="sup@example.com", role="supervisor", teams=[self.team])
        self.exec1 = make_user(email="exec1@example.com", teams=[self.team])
        self.exec2 = make_user(email="exec2@example.com", teams=[self.team, self.other_team])
        self.payments_sup = make_user(email="paysup@example.com", role="supervisor", teams=[self.other_team])
        self.admin = make_user(email="admin@example.com", role="admin")
        self.tokens = {u.email: issue_api_token(session, u) for u in
                       (self.sup, self.exec1, self.exec2, self.payments_sup, self.admin)}
        session.commit()

    def headers(self, email):
        return auth(self.tokens[email])


@pytest.fixture
def world(session, make_team, make_user):
    return World(session, make_team, make_user)


def patch(client, item, body, headers):
    return client.patch(f"{API}/items/{item.ref}", json=body, headers=headers)


def kinds(session, item):
    return [e.kind for e in session.scalars(sa.select(Event).where(Event.work_item_id == item.id).order_by(Event.id))]


def close(a, b):
    """Equal up to the API's millisecond precision."""
    return abs(a - b) < timedelta(milliseconds=1)


def reload(session, item):
    session.expire_all()
    return session.get(WorkItem, item.id)


def test_raising_priority_to_urgent_recalculates_due_times(client, session, world, make_item):
    make_policy(session, name="Standard", first_response_minutes=240, resolution_minutes=2880)
    make_policy(session, name="Urgent", match_priority="urgent", first_response_minutes=30, resolution_minutes=240)
    created = utcnow() - timedelta(minutes=10)
    item = make_item(team=world.team, actor=world.sup, assignee=world.exec1, now=created)
    session.commit()
    exec1 = world.headers("exec1@example.com")
    before = client.get(f"{API}/items/{item.ref}", headers=exec1).get_json()
    assert before["sla"]["policy"] == "Standard"
    assert close(parse_iso(before["sla"]["first_response_due"]), created + timedelta(minutes=240))

    response = patch(client, item, {"priority": "urgent", "version": before["version"]}, exec1)
    assert response.status_code == 200, response.get_data(as_text=True)
    data = response.get_json()
    assert data["priority"] == "urgent" and data["version"] > before["version"]
    assert data["sla"]["policy"] == "Urgent"
    assert close(parse_iso(data["sla"]["first_response_due"]), created + timedelta(minutes=30))
    assert close(parse_iso(data["sla"]["resolution_due"]), created + timedelta(minutes=240))
    assert data["sla"]["next_due"] == data["sla"]["first_response_due"]
    assert 19 <= data["sla"]["remaining_minutes"] <= 20  # 30 minutes from creation, 10 of them gone
    assert data["sla"]["state"] == "on_track"  # 20 of 30 minutes left; at risk from 7.5 left
    assert kinds(session, item)[-2:] == ["reclassified", "sla_recalculated"]

    events = client.get(f"{API}/items/{item.ref}/events", headers=exec1).get_json()["events"]
    reclassified, recalculated = events[-2:]
    assert reclassified["data"] == {"priority": ["normal", "urgent"]}
    assert reclassified["actor"] == recalculated["actor"] == "exec1@example.com"
    assert recalculated["data"]["policy"] == "Urgent" and recalculated["data"]["reason"] == "priority"
    assert close(datetime.fromisoformat(recalculated["data"]["first_response_due"]), created + timedelta(minutes=30))


def test_supervisor_moves_the_item_and_a_non_member_assignee_is_dropped(client, session, world, make_item):
    kept = make_item(team=world.team, actor=world.sup, assignee=world.exec2)
    dropped = make_item(team=world.team, actor=world.sup, assignee=world.exec1)
    session.commit()
    sup = world.headers("sup@example.com")

    response = patch(client, dropped, {"team": "Payments", "type": "discrepancy_fix"}, sup)
    assert response.status_code == 200, response.get_data(as_text=True)
    data = response.get_json()
    assert (data["team"], data["type"], data["assignee"]) == ("Payments", "discrepancy_fix", None)
    dropped = reload(session, dropped)
    assert (dropped.team_id, dropped.assignee_id) == (world.other_team.id, None)
    reclassified = session.scalar(sa.select(Event).where(Event.work_item_id == dropped.id,
                                                         Event.kind == "reclassified"))
    assert reclassified.data["team"] == ["Returns", "Payments"]
    assert reclassified.data["assignee"] == ["exec1@example.com", None]
    # The item left the supervisor's teams: now it is the other team's, and hidden from him.
    assert_error(client.get(f"{API}/items/{dropped.ref}", headers=sup), 404)
    assert client.get(f"{API}/items/{dropped.ref}", headers=world.headers("paysup@example.com")).status_code == 200

    response = patch(client, kept, {"team": "Payments"}, sup)
    assert response.status_code == 200 and response.get_json()["assignee"] == "exec2@example.com"


def test_executive_changing_the_team_is_forbidden_and_changes_nothing(client, session, world, make_item):
    item = make_item(team=world.team, actor=world.sup, assignee=world.exec1)
    session.commit()
    version = item.version
    exec1 = world.headers("exec1@example.com")
    assert_error(patch(client, item, {"team": "Payments", "priority": "high"}, exec1), 403, "forbidden")
    # A team name that does not exist is no business of an executive either: still 403, not 422.
    assert_error(patch(client, item, {"team": "No such team"}, exec1), 403, "forbidden")
    item = reload(session, item)
    assert (item.team_id, item.priority, item.version) == (world.team.id, "normal", version)
    assert "reclassified" not in kinds(session, item)
    # Not the assignee: not even the priority.
    assert_error(patch(client, item, {"priority": "high"}, world.headers("exec2@example.com")), 403, "forbidden")
    # Someone outside the team cannot even see it.
    assert_error(patch(client, item, {"priority": "high"}, world.headers("paysup@example.com")), 404, "not_found")


def test_stale_version_is_409_and_changes_nothing(client, session, world, make_item):
    item = make_item(team=world.team, actor=world.sup)
    session.commit()
    sup = world.headers("sup@example.com")
    seen = item.version
    first = patch(client, item, {"priority": "high", "version": seen}, sup)
    assert first.status_code == 200
    error = assert_error(patch(client, item, {"priority": "low", "version": seen}, sup), 409, "conflict")
    assert error["fields"]["version"] == str(first.get_json()["version"])
    assert reload(session, item).priority == "high"


@pytest.mark.parametrize("body, field", [
    ({"priority": "asap"}, "priority"),
    ({"type": "refund"}, "type"),
    ({"team": "Nowhere"}, "team"),
    ({"team": ""}, "team"),
    ({"priority": 3}, "priority"),
    ({"priority": "high", "version": "2"}, "version"),
    ({"priority": "high", "status": "open"}, "status"),
    ({}, "priority"),
    ({"version": 1}, "type"),
    ({"type": None, "priority": None}, "team"),
])
def test_bad_values_are_422_naming_the_field(client, session, world, make_item, body, field):
    item = make_item(team=world.team, actor=world.sup)
    session.commit()
    version = item.version
    assert_error(patch(client, item, body, world.headers("sup@example.com")), 422, "invalid", field)
    item = reload(session, item)
    assert (item.type, item.priority, item.version) == ("return", "normal", version)


def test_patch_needs_json_and_a_token(client, session, world, make_item):
    item = make_item(team=world.team, actor=world.sup)
    session.commit()
    url = f"{API}/items/{item.ref}"
    assert_error(client.patch(url, data="priority=high", content_type="application/x-www-form-urlencoded",
                              headers=world.headers("sup@example.com")), 415)
    assert_error(client.patch(url, json={"priority": "high"}), 401, "unauthorized")


def test_sla_object_of_a_running_clock(client, session, world, make_item):
    make_policy(session, name="Returns SLA", first_response_minutes=60, resolution_minutes=600, warn_at_percent=75)
    created = utcnow() - timedelta(minutes=20)
    item = make_item(team=world.team, actor=world.sup, now=created)
    session.commit()
    data = client.get(f"{API}/items/{item.ref}", headers=world.headers("sup@example.com")).get_json()
    clock = data["sla"]
    assert set(clock) == {"policy", "state", "paused", "first_response_due", "resolution_due", "next_due",
                          "next_check_at", "first_responded_at", "remaining_minutes", "escalation_level"}
    assert (clock["policy"], clock["state"], clock["paused"], clock["escalation_level"]) == (
        "Returns SLA", "on_track", False, 0)
    assert close(parse_iso(clock["next_check_at"]), created + timedelta(minutes=45))
    assert isinstance(clock["remaining_minutes"], float) and 39.5 <= clock["remaining_minutes"] <= 40.0
    assert clock["remaining_minutes"] == round(clock["remaining_minutes"], 1)
    assert data["escalation_level"] == 0


def test_sla_object_of_a_paused_item(client, session, world, make_item):
    item = make_item(team=world.team, actor=world.sup, assignee=world.exec1)
    lifecycle.change_status(session, item, "pending_customer", actor=world.exec1)
    session.commit()
    clock = client.get(f"{API}/items/{item.ref}", headers=world.headers("exec1@example.com")).get_json()["sla"]
    assert (clock["state"], clock["paused"]) == ("paused", True)
    assert clock["next_due"] is None and clock["remaining_minutes"] is None and clock["next_check_at"] is None
    assert clock["first_response_due"] and clock["resolution_due"]  # kept, to be moved on resume


def test_sla_object_of_a_breached_item(client, session, world, make_item):
    make_policy(session, name="Fast", first_response_minutes=60, resolution_minutes=6000)
    now = utcnow()
    created = now - timedelta(hours=3)
    item = make_item(team=world.team, actor=world.sup, assignee=world.exec1, now=created)
    taken = sla_ladder.process_due(session, item, now)
    session.commit()
    assert taken == [("first_response", "warning", 0), ("first_response", "breach", 1)]

    data = client.get(f"{API}/items/{item.ref}", headers=world.headers("sup@example.com")).get_json()
    clock = data["sla"]
    assert (clock["state"], clock["paused"], clock["escalation_level"], data["escalation_level"]) == (
        "breached", False, 1, 1)
    assert data["priority"] == "high"  # the default ladder raises it one step
    assert clock["next_due"] == clock["first_response_due"]
    assert -121 <= clock["remaining_minutes"] <= -119  # due an hour after creation, three hours ago
    # The next step is the resolution warning, at 75% of 6000 minutes.
    assert close(parse_iso(clock["next_check_at"]), created + timedelta(minutes=4500))
    events = client.get(f"{API}/items/{item.ref}/events", headers=world.headers("sup@example.com")).get_json()
    breach = [e for e in events["events"] if e["kind"] == "sla_breached"]
    assert len(breach) == 1 and breach[0]["actor"] == "sla"
    assert breach[0]["data"]["target"] == "first_response" and breach[0]["data"]["level"] == 1
    assert breach[0]["data"]["notified"] == ["exec1@example.com", "sup@example.com"]
    assert breach[0]["data"]["priority"] == "high"


def test_openapi_documents_reclassify_and_the_sla_fields(client):
    spec = client.get(f"{API}/openapi.json").get_json()
    operation = spec["paths"]["/items/{ref}"]["patch"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/Reclassify")
    assert {"200", "403", "404", "409", "422"} <= set(operation["responses"])
    schemas = spec["components"]["schemas"]
    assert set(schemas["Reclassify"]["properties"]) == {"type", "priority", "team", "version"}
    assert schemas["Reclassify"]["additionalProperties"] is False
    assert {"state", "paused", "next_due", "next_check_at", "remaining_minutes", "escalation_level",
            "policy"} <= set(schemas["Sla"]["properties"])
