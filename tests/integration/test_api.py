"""JSON API v1 through the real app: token auth, the item life cycle, errors and the OpenAPI document."""
import re
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from queue_app.models import ApiToken, WorkItem
from queue_app.models.base import utcnow
from queue_app.services.checks import runner as checks_runner
from queue_app.services.items.work_types import FIELDS
from queue_app.services.people.users import issue_api_token
from tests.factories import VALID_FIELDS

API = "/api/v1"
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def parse_iso(value):
    assert ISO_Z.match(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_error(response, status, code=None, field=None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code
    if field:
        assert field in error["fields"], error
    return error


class World:
    """Two teams, their people and a token for each person."""

    def __init__(self, session, make_team, make_user):
        self.team = make_team(name="Returns", work_types=["return"])
        self.other_team = make_team(name="Payments", work_types=["discrepancy_fix"])
        self.sup = make_user(email="sup@example.com", role="supervisor", teams=[self.team])
        self.exec1 = make_user(email="exec1@example.com", teams=[self.team])
        self.exec2 = make_user(email="exec2@example.com", teams=[self.team])
        self.outsider = make_user(email="out@example.com", role="supervisor", teams=[self.other_team])
        self.admin = make_user(email="admin@example.com", role="admin")
        self.tokens = {u.email: issue_api_token(session, u) for u in
                       (self.sup, self.exec1, self.exec2, self.outsider, self.admin)}
        session.commit()

    def headers(self, email):
        return auth(self.tokens[email])


@pytest.fixture
def world(session, make_team, make_user):
    return World(session, make_team, make_user)


def new_return(**overrides):
    body = {"type": "return", "subject": "Broken kettle", "description": "It leaks.", "priority": "high",
            "team": "Returns", "requester_email": "Customer@Example.com", "requester_name": "Ann Customer",
            "fields": dict(VALID_FIELDS["return"])}
    body.update(overrides)
    return body


def list_all(client, headers, **params):
    """Walk every page with the cursor; returns (refs in order, number of pages)."""
    refs, pages, cursor = [], 0, None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = client.get(f"{API}/items", query_string=query, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        data = response.get_json()
        refs += [item["ref"] for item in data["items"]]
        pages += 1
        cursor = data["next_cursor"]
        if cursor is None:
            return refs, pages
        assert len(data["items"]) == int(params["limit"])


def test_round_trip_create_list_get_assign_status_note_events_checks(client, session, world, make_item):
    sup = world.headers("sup@example.com")
    before = utcnow().replace(microsecond=0)

    response = client.post(f"{API}/items", json=new_return(assignee="exec1@example.com"), headers=sup)
    assert response.status_code == 201, response.get_data(as_text=True)
    item = response.get_json()
    ref = item["ref"]
    assert re.fullmatch(r"BO-\d{6}", ref)
    assert response.headers["Location"].endswith(f"{API}/items/{ref}")
    assert (item["type"], item["status"], item["priority"], item["team"]) == ("return", "new", "high", "Returns")
    assert item["assignee"] == "exec1@example.com"
    assert item["requester"] == {"email": "customer@example.com", "name": "Ann Customer"}
    assert item["subject"] == "Broken kettle" and item["description"] == "It leaks."
    assert item["fields"] == {"order_number": "ORD-1001", "purchase_date": "2026-11-01", "amount": "49.90",
                              "currency": "EUR", "reason": "Wrong size"}
    assert parse_iso(item["created_at"]) >= before and parse_iso(item["updated_at"]) >= before
    assert isinstance(item["version"], int) and item["needs_attention"] is False and item["escalation_level"] == 0
    assert item["sla"]["state"] == "on_track" and item["sla"]["first_responded_at"] is None
    assert parse_iso(item["sla"]["next_due"]) == parse_iso(item["sla"]["first_response_due"])
    assert parse_iso(item["sla"]["resolution_due"]) > parse_iso(item["sla"]["first_response_due"])
    assert 230 <= item["sla"]["remaining_minutes"] <= 240

    # More items: some via the API, one the caller may not see.
    created = [ref]
    for n in range(4):
        extra = client.post(f"{API}/items", json=new_return(subject=f"Extra {n}", priority="low"), headers=sup)
        assert extra.status_code == 201
        created.append(extra.get_json()["ref"])
    hidden = make_item(team=world.other_team, type="discrepancy_fix", actor=world.outsider)
    session.commit()

    refs, pages = list_all(client, sup, limit=2)
    assert pages == 3 and refs == sorted(created, reverse=True) and hidden.ref not in refs
    refs, pages = list_all(client, sup, limit=1, priority="low", status="new", type="return", team="Returns")
    assert pages == 4 and refs == sorted(created[1:], reverse=True)
    exec1 = world.headers("exec1@example.com")
    assert list_all(client, exec1, limit=50, assignee="me") == ([ref], 1)
    assert list_all(client, sup, limit=50, assignee="exec1@example.com") == ([ref], 1)
    assert list_all(client, sup, limit=3, assignee="none")[0] == sorted(created[1:], reverse=True)
    assert list_all(client, sup, limit=50, assignee="me") == ([], 1)
    assert list_all(client, world.headers("admin@example.com"), limit=50, type="discrepancy_fix") == ([hidden.ref], 1)

    fetched = client.get(f"{API}/items/{ref.lower()}", headers=exec1)
    assert fetched.status_code == 200
    got = fetched.get_json()
    assert {k: v for k, v in got.items() if k != "sla"} == {k: v for k, v in item.items() if k != "sla"}

    assigned = client.post(f"{API}/items/{ref}/assign", json={"assignee": "exec2@example.com",
                                                              "version": item["version"]}, headers=sup)
    assert assigned.status_code == 200, assigned.get_data(as_text=True)
    assert assigned.get_json()["assignee"] == "exec2@example.com"
    version = assigned.get_json()["version"]
    assert version > item["version"]

    exec2 = world.headers("exec2@example.com")
    opened = client.post(f"{API}/items/{ref}/status", json={"status": "open", "comment": "on it", "version": version},
                         headers=exec2)
    assert opened.status_code == 200, opened.get_data(as_text=True)
    assert opened.get_json()["status"] == "open" and "resolved" in opened.get_json()["allowed_transitions"]

    note = client.post(f"{API}/items/{ref}/notes", json={"body": "  Called the courier.  "}, headers=exec2)
    assert note.status_code == 201
    assert note.get_json()["body"] == "Called the courier." and note.get_json()["author"] == "exec2@example.com"
    parse_iso(note.get_json()["created_at"])

    events = client.get(f"{API}/items/{ref}/events", headers=exec1).get_json()["events"]
    assert [(e["kind"], e["actor"]) for e in events] == [
        ("created", "sup@example.com"), ("sla_set", "sup@example.com"), ("assigned", "sup@example.com"),
        ("assigned", "sup@example.com"), ("status_changed", "exec2@example.com"),
        ("note_added", "exec2@example.com"),
    ]
    times = [parse_iso(e["at"]) for e in events]
    assert times == sorted(times) and times[0] >= before
    assert events[3]["data"] == {"from": "exec1@example.com", "to": "exec2@example.com"}
    assert events[4]["data"] == {"from": "new", "to": "open", "comment": "on it"}

    assert client.get(f"{API}/items/{ref}/checks", headers=exec1).get_json() == {"checks": []}
    item_id = session.scalar(sa.select(WorkItem.id).where(WorkItem.ref == ref))
    checks_runner.run_check(session, item_id, "required_fields")
    session.commit()
    results = client.get(f"{API}/items/{ref}/checks", headers=exec1).get_json()["checks"]
    assert [(c["name"], c["status"]) for c in results] == [("required_fields", "passed")]
    assert results[0]["message"] and results[0]["data"] == {} and parse_iso(results[0]["at"])


@pytest.mark.parametrize("work_type, fields, bad_field", [
    ("return", {"amount": "12.50"}, "fields.order_number"),
    ("return", {"order_number": "ORD-1", "purchase_date": "yesterday"}, "fields.purchase_date"),
    ("document_verification", {"document_type": "visa"}, "fields.document_type"),
    ("document_verification", {"document_type": "passport", "expires_on": 20300101}, "fields.expires_on"),
    ("discrepancy_fix", {**VALID_FIELDS["discrepancy_fix"], "expected_amount": 100.5}, "fields.expected_amount"),
    ("discrepancy_fix", {"account": "ACC-1", "expected_amount": "1.00", "actual_amount": "2.00"}, "fields.currency"),
    ("escalation", {"related_ref": "nope"}, "fields.related_ref"),
    ("escalation", {"severity": "apocalyptic"}, "fields.severity"),
    ("general", {"colour": "red"}, "fields.colour"),
])
def test_type_specific_validation_errors(client, session, world, work_type, fields, bad_field):
    body = {"type": work_type, "subject": "Check me", "team": "Returns", "fields": fields}
    response = client.post(f"{API}/items", json=body, headers=world.headers("sup@example.com"))
    assert_error(response, 422, "invalid", bad_field)
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == 0


@pytest.mark.parametrize("work_type", sorted(FIELDS))
def test_every_type_can_be_created_with_valid_fields(client, world, work_type):
    body = {"type": work_type, "subject": "Valid", "team": "Returns", "fields": VALID_FIELDS[work_type]}
    response = client.post(f"{API}/items", json=body, headers=world.headers("sup@example.com"))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert set(response.get_json()["fields"]) == {spec.name for spec in FIELDS[work_type]}


@pytest.mark.parametrize("body, field", [
    ({"subject": "x", "colour": "red"}, "colour"),
    ({"subject": 42}, "subject"),
    ({"subject": "x", "fields": ["a"]}, "fields"),
    ({"subject": "x", "priority": 3}, "priority"),
    ({"subject": "x", "priority": "whenever"}, "priority"),
    ({"subject": "x", "type": "refund"}, "type"),
    ({"subject": "   "}, "subject"),
    ({}, "subject"),
    ({"subject": "x", "team": "Nowhere"}, "team"),
    ({"subject": "x", "assignee": "ghost@example.com"}, "assignee"),
    ({"subject": "x", "requester_email": "not an email"}, "requester_email"),
    ({"subject": "0", "requester_name": "0" * 256}, "requester_name"),  # was a 500 on PostgreSQL
])
def test_create_body_errors_name_the_field(client, world, body, field):
    response = client.post(f"{API}/items", json=body, headers=world.headers("sup@example.com"))
    assert_error(response, 422, "invalid", field)


def test_malformed_and_non_json_bodies_are_400_or_415_json(client, world):
    headers = world.headers("sup@example.com")
    cases = [
        (b'{"subject": "x",', "application/json", 400),
        (b"", "application/json", 400),
        (b'["subject"]', "application/json", 400),
        (b'"just a string"', "application/json", 400),
        (b'{"subject": NaN}', "application/json", 400),
        (b"\xff\xfe\xfa", "application/json", 400),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
        (b"subject=x", "application/x-www-form-urlencoded", 415),
        (b'{"subject": "x"}', "text/plain", 415),
        (b'{"subject": "x"}', None, 415),
    ]
    for data, content_type, status in cases:
        kwargs = {"content_type": content_type} if content_type else {}
        response = client.post(f"{API}/items", data=data, headers=headers, **kwargs)
        assert_error(response, status)
    assert_error(client.post(f"{API}/items/BO-000001/notes", data=b"[]", content_type="application/json",
                             headers=headers), 400)


def test_missing_or_bad_token_is_401_with_challenge(client, session, world):
    cases = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Basic {world.tokens['sup@example.com']}"},
        {"Authorization": world.tokens["sup@example.com"]},
    ]
    for headers in cases:
        for response in (client.get(f"{API}/items", headers=headers),
                         client.post(f"{API}/items", json=new_return(), headers=headers)):
            assert_error(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    good = world.headers("sup@example.com")
    assert client.get(f"{API}/items", headers=good).status_code == 200
    token_row = session.scalar(sa.select(ApiToken).where(ApiToken.user_id == world.sup.id))
    assert token_row.last_used_at is not None
    token_row.revoked_at = utcnow()
    session.commit()
    response = client.get(f"{API}/items", headers=good)
    assert_error(response, 401)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == 0


def test_token_from_the_cli_works(client, runner, world):
    result = runner.invoke(args=["users", "token", "exec1@example.com", "--name", "partner"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    response = client.get(f"{API}/items", headers=auth(token))
    assert response.status_code == 200 and response.get_json() == {"items": [], "next_cursor": None}


def test_another_teams_item_is_not_found_everywhere(client, session, world, make_item):
    item = make_item(team=world.team, actor=world.sup)
    session.commit()
    headers = world.headers("out@example.com")
    for path in ("", "/events", "/checks"):
        assert_error(client.get(f"{API}/items/{item.ref}{path}", headers=headers), 404, "not_found")
    actions = [("/assign", {"assignee": "out@example.com"}), ("/assign", {"assignee": None}),
               ("/status", {"status": "open"}), ("/notes", {"body": "hello"})]
    for path, body in actions:
        assert_error(client.post(f"{API}/items/{item.ref}{path}", json=body, headers=headers), 404, "not_found")
    assert_error(client.get(f"{API}/items/BO-999999", headers=headers), 404)
    assert_error(client.get(f"{API}/items/nonsense", headers=headers), 404)
    assert item.ref not in [i["ref"] for i in client.get(f"{API}/items", headers=headers).get_json()["items"]]
    session.refresh(item)
    assert (item.status, item.assignee_id) == ("new", None)


def test_creating_for_a_team_you_are_not_in_is_forbidden(client, world):
    response = client.post(f"{API}/items", json=new_return(team="Payments", type="general", fields={}),
                           headers=world.headers("exec1@example.com"))
    assert_error(response, 403, "forbidden")


def test_executive_cannot_assign_someone_else_but_can_take_unassigned(client, session, world, make_item):
    item = make_item(team=world.team, actor=world.sup)
    session.commit()
    exec1 = world.headers("exec1@example.com")
    response = client.post(f"{API}/items/{item.ref}/assign", json={"assignee": "exec2@example.com"}, headers=exec1)
    assert_error(response, 403, "forbidden")
    response = client.post(f"{API}/items/{item.ref}/assign", json={"assignee": "exec1@example.com"}, headers=exec1)
    assert response.status_code == 200 and response.get_json()["assignee"] == "exec1@example.com"
    response = client.post(f"{API}/items/{item.ref}/assign", json={"assignee": None}, headers=exec1)
    assert_error(response, 403, "forbidden")
    response = client.post(f"{API}/items/{item.ref}/assign", json={"assignee": None},
                           headers=world.headers("sup@example.com"))
    assert response.status_code == 200 and response.get_json()["assignee"] is None


def test_assign_body_errors(client, session, world, make_item):
    item = make_item(team=world.team, actor=world.sup)
    session.commit()
    sup = world.headers("sup@example.com")
    url = f"{API}/items/{item.ref}/assign"
    assert_error(client.post(url, json={}, headers=sup), 422, "invalid", "assignee")
    assert_error(client.post(url, json={"assignee": "ghost@example.com"}, headers=sup), 422, "invalid", "assignee")
    assert_error(client.post(url, json={"assignee": "out@example.com"}, headers=sup), 422, "invalid", "assignee")
    assert_error(client.post(url, json={"assignee": "exec1@example.com", "version": "1"}, headers=sup), 422,
                 "invalid", "version")
    assert_error(client.post(url, json={"assignee": "exec1@example.com", "version": True}, headers=sup), 422,
                 "invalid", "version")
    assert_error(client.post(url, json={"assignee": "exec1@example.com", "who": "me"}, headers=sup), 422,
                 "invalid", "who")


def test_illegal_status_transition_is_422_and_changes_nothing(client, session, world, make_item):
    item = make_item(team=world.team, actor=world.sup)
    session.commit()
    sup = world.headers("sup@example.com")
    url = f"{API}/items/{item.ref}/status"
    assert client.post(url, json={"status": "closed"}, headers=sup).status_code == 200
    error = assert_error(client.post(url, json={"status": "open"}, headers=sup), 422, "invalid", "status")
    assert "closed" in error["message"]
    assert_error(client.post(url, json={"status": "done"}, headers=sup), 422, "invalid", "status")
    assert_error(client.post(url, json={"comment": "no status"}, headers=sup), 422, "invalid", "status")
    assert client.get(f"{API}/items/{item.ref}", headers=sup).get_json()["status"] == "closed"


def test_executive_cannot_change_status_of_someone_elses_item(client, session, world, make_item):
    item = make_item(team=world.team, actor=world.sup, assignee=world.exec1)
    session.commit()
    response = client.post(f"{API}/items/{item.ref}/status", json={"status": "open"},
                           headers=world.headers("exec2@example.com"))
    assert_error(response, 403, "forbidden")


def test_stale_version_is_409_and_changes_nothing(client, session, world, make_item):
    item = make_item(team=world.team, actor=world.sup)
    session.commit()
    sup = world.headers("sup@example.com")
    seen = client.get(f"{API}/items/{item.ref}", headers=sup).get_json()["version"]
    first = client.post(f"{API}/items/{item.ref}/status", json={"status": "open", "version": seen}, headers=sup)
    assert first.status_code == 200 and first.get_json()["version"] > seen
    stale = client.post(f"{API}/items/{item.ref}/status", json={"status": "resolved", "version": seen}, headers=sup)
    error = assert_error(stale, 409, "conflict")
    assert error["fields"]["version"] == str(first.get_json()["version"])
    stale = client.post(f"{API}/items/{item.ref}/assign", json={"assignee": "exec1@example.com", "version": seen},
                        headers=sup)
    assert_error(stale, 409, "conflict")
    current = client.get(f"{API}/items/{item.ref}", headers=sup).get_json()
    assert (current["status"], current["assignee"], current["version"]) == ("open", None,
                                                                           first.get_json()["version"])


def test_a_version_written_as_a_whole_float_is_that_integer(client, session, world, make_item):
    """JSON Schema counts 3.0 as an integer; the API refused it while the document allowed it."""
    item = make_item(team=world.team, actor=world.sup)
    session.commit()
    sup = world.headers("sup@example.com")
    version = client.get(f"{API}/items/{item.ref}", headers=sup).get_json()["version"]
    response = client.post(f"{API}/items/{item.ref}/assign", json={"assignee": "exec1@example.com",
                                                                   "version": float(version)}, headers=sup)
    assert response.status_code == 200, response.get_data(as_text=True)
    stale = client.post(f"{API}/items/{item.ref}/status", json={"status": "open", "version": float(version)},
                        headers=sup)
    assert_error(stale, 409, "conflict")
    assert_error(client.post(f"{API}/items/{item.ref}/status", json={"status": "open", "version": 2.5},
                             headers=sup), 422, "invalid", "version")


def test_note_needs_a_body(client, session, world, make_item):
    item = make_item(team=world.team, actor=world.sup)
    session.commit()
    url = f"{API}/items/{item.ref}/notes"
    headers = world.headers("exec1@example.com")
    assert_error(client.post(url, json={"body": "   "}, headers=headers), 422, "invalid", "body")
    assert_error(client.post(url, json={}, headers=headers), 422, "invalid", "body")
    assert_error(client.post(url, json={"body": ["x"]}, headers=headers), 422, "invalid", "body")


@pytest.mark.parametrize("query, field", [
    ({"limit": "0"}, "limit"),
    ({"limit": "201"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"cursor": "garbage!"}, "cursor"),
    ({"cursor": "eyJpZCI6ICJ4In0"}, "cursor"),
    ({"status": "done"}, "status"),
    ({"type": "refund"}, "type"),
    ({"priority": "asap"}, "priority"),
    ({"team": "Nowhere"}, "team"),
    ({"assignee": "ghost@example.com"}, "assignee"),
    ({"colour": "red"}, "colour"),
])
def test_list_query_errors_name_the_parameter(client, world, query, field):
    response = client.get(f"{API}/items", query_string=query, headers=world.headers("sup@example.com"))
    assert_error(response, 422, "invalid", field)


def test_list_default_and_maximum_page_size(client, session, world, make_item):
    for _ in range(3):
        make_item(team=world.team, actor=world.sup)
    session.commit()
    sup = world.headers("sup@example.com")
    data = client.get(f"{API}/items", headers=sup).get_json()
    assert len(data["items"]) == 3 and data["next_cursor"] is None
    data = client.get(f"{API}/items", query_string={"limit": 200}, headers=sup).get_json()
    assert len(data["items"]) == 3


def test_wrong_method_and_unknown_path_are_json(client, world):
    headers = world.headers("sup@example.com")
    assert_error(client.delete(f"{API}/items", headers=headers), 405)
    assert_error(client.get(f"{API}/nothing-here", headers=headers), 404)


def test_wrong_method_says_which_methods_are_allowed(client, world):
    """RFC 9110: a 405 carries Allow; the JSON error handler used to drop it."""
    response = client.open(f"{API}/items/BO-000001/status", method="TRACE", headers=world.headers("sup@example.com"))
    assert_error(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"POST", "OPTIONS"}
    response = client.delete(f"{API}/items", headers=world.headers("sup@example.com"))
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST", "OPTIONS"}


def _openapi_path(rule):
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule[len(API):])


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_document_says_a_refund_amount_is_more_than_0(client):
    schemas = client.get(f"{API}/openapi.json").get_json()["components"]["schemas"]
    amount = schemas["NewFields_return"]["properties"]["amount"]
    pattern = re.compile(amount.get("pattern") or amount["anyOf"][0]["pattern"])
    assert [v for v in ("49.90", "5", "0.01", "0.5", "100.00") if not pattern.search(v)] == []
    assert [v for v in ("-5.10", "0", "0.00", "00.0", "1.234", "") if pattern.search(v)] == []
    expected = schemas["NewFields_discrepancy_fix"]["properties"]["expected_amount"]
    assert re.search(expected.get("pattern") or expected["anyOf"][0]["pattern"], "-5.10")  # may be negative


def test_openapi_document_describes_every_endpoint(client, app):
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    spec = response.get_json()
    assert spec["openapi"].startswith("3.") and spec["info"]["title"]
    assert spec["servers"] == [{"url": API}]
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearerAuth"][
            "description"]}
    assert spec["security"] == [{"bearerAuth": []}]

    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API + "/"):
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                served.add((_openapi_path(rule.rule), method.lower()))
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops if method != "parameters"}
    assert served == documented
    for path, method in [("/items", "post"), ("/items", "get"), ("/items/{ref}", "get"),
                         ("/items/{ref}/assign", "post"), ("/items/{ref}/status", "post"),
                         ("/items/{ref}/notes", "post"), ("/items/{ref}/events", "get"),
                         ("/items/{ref}/checks", "get"), ("/openapi.json", "get")]:
        assert (path, method) in served
        operation = spec["paths"][path][method]
        assert operation["operationId"] and operation["responses"]
        if "{ref}" in path:
            assert [p["name"] for p in operation["parameters"] if p["in"] == "path"] == ["ref"]
    assert spec["paths"]["/openapi.json"]["get"]["security"] == []

    schemas = spec["components"]["schemas"]
    for name in ("Item", "Event", "Check", "Error", "ItemList", "NewItem", "Note"):
        assert name in schemas
    assert {"ref", "sla", "fields", "version", "requester"} <= set(schemas["Item"]["properties"])
    for ref in _refs(spec):
        section, name = ref.split("/")[-2:]
        assert ref.startswith("#/components/") and name in spec["components"][section], ref
    for work_type, specs in FIELDS.items():
        new = schemas[f"NewFields_{work_type}"]
        assert set(new["properties"]) == {s.name for s in specs}
        assert set(new.get("required", [])) == {s.name for s in specs if s.required}
        assert set(schemas[f"Fields_{work_type}"]["properties"]) == {s.name for s in specs}
    choice = schemas["NewFields_document_verification"]["properties"]["document_type"]
    assert "passport" in choice["enum"]


def test_times_are_utc_with_z_and_overdue_items_show_breached(client, session, world, make_item):
    item = make_item(team=world.team, actor=world.sup, now=datetime(2024, 3, 31, 0, 30, tzinfo=timezone.utc))
    session.commit()
    data = client.get(f"{API}/items/{item.ref}", headers=world.headers("sup@example.com")).get_json()
    assert data["created_at"] == "2024-03-31T00:30:00.000Z"
    assert data["sla"]["first_response_due"] == "2024-03-31T04:30:00.000Z"
    assert data["sla"]["state"] == "breached" and data["sla"]["remaining_minutes"] < 0
