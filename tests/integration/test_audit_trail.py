"""The audit trail: every change to who may do what is recorded with before and after (secrets
masked), admins read and export it, and the whole trail (item events and configuration
changes) is one hash chain that `flask audit verify` checks; the front-office form's
acknowledgement email."""
import csv
import io
import json
import re
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import flask_migrate
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from config import TestingConfig
from queue_app import create_app
from queue_app.extensions import db as _db
from queue_app.models import (
    ApiToken,
    AuditChainHead,
    AuditSeal,
    ConfigChange,
    Event,
    Mailbox,
    Message,
    OutboxJob,
    Team,
    User,
    WorkItem,
)
from queue_app.services.approvals import decisions
from queue_app.services.audit import chain
from queue_app.services.audit import record as audit
from queue_app.services.checks import exchange_rates
from queue_app.services.intake import routing_rules
from queue_app.services.items import canned_responses
from queue_app.services.items.events import record_event
from tests.conftest import Auth, csrf_token_from, database_is
from tests.integration.test_migrations import MIGRATIONS

SEND_JOB = "workers.mail_out.send_message"


def text(response):
    return response.get_data(as_text=True)


def token(client, url="/"):
    return csrf_token_from(text(client.get(url)))


def post(client, url, data, page=None):
    return client.post(url, data={"csrf_token": token(client, page or url), **data})


def signed_in(app, email, *password):
    client = app.test_client()
    Auth(client).login(email, *password)
    return client


def entries(session, kind=None, action=None):
    session.expire_all()
    query = sa.select(ConfigChange).order_by(ConfigChange.id)
    if kind is not None:
        query = query.where(ConfigChange.object_type == kind)
    if action is not None:
        query = query.where(ConfigChange.action == action)
    return session.scalars(query).all()


def last(session, kind, action=None):
    found = entries(session, kind, action)
    assert found, f"no {kind} entry"
    return found[-1]


def stored_text(session):
    """Every audit entry as the database holds it, for looking for secrets."""
    rows = session.execute(sa.select(ConfigChange.__table__)).all()
    return json.dumps([list(map(str, row)) for row in rows])


@pytest.fixture
def world(session, make_team, make_user):
    returns = make_team(name="Returns", work_types=["return"])
    docs = make_team(name="Documents", work_types=["document_verification"])
    admin = make_user(email="ada@example.com", name="Ada Admin", role="admin")
    sup = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[returns])
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    lena = make_user(email="lena@example.com", name="Lena Vogel", teams=[docs])
    session.commit()
    return type("World", (), dict(returns=returns, docs=docs, admin=admin, sup=sup, priya=priya, lena=lena))


@pytest.fixture
def admin(client, auth, world):
    auth.login("ada@example.com")
    return client


def verify(runner):
    return runner.invoke(args=["audit", "verify"])


# --- what is recorded ------------------------------------------------------------------------------

def test_a_role_change_and_team_membership_are_recorded_with_before_and_after(admin, session, world):
    response = post(admin, f"/admin/users/{world.priya.id}", {
        "name": "Priya Nair", "role": "supervisor", "timezone": "UTC", "capacity": "20", "active": "y",
        "skills": ["return", "document_verification", "discrepancy_fix", "escalation", "general"],
        "teams": [str(world.returns.id), str(world.docs.id)]})
    assert response.status_code == 302

    entry = last(session, "user")
    assert (entry.action, entry.object_id, entry.object_label) == ("updated", world.priya.id, "priya@example.com")
    assert (entry.actor_id, entry.actor_label) == (world.admin.id, "ada@example.com")
    assert entry.before == {"role": "executive", "teams": ["Returns"]}
    assert entry.after == {"role": "supervisor", "teams": ["Documents", "Returns"]}
    assert entry.at is not None


def test_saving_unchanged_values_records_nothing(admin, session, world):
    before = len(entries(session))
    data = {"name": "Priya Nair", "role": "executive", "timezone": "UTC", "capacity": "20", "active": "y",
            "skills": ["return", "document_verification", "discrepancy_fix", "escalation", "general"],
            "teams": [str(world.returns.id)]}
    assert post(admin, f"/admin/users/{world.priya.id}", data).status_code == 302
    assert len(entries(session)) == before


def test_a_new_person_and_a_password_reset_never_store_the_password(admin, session, world):
    response = post(admin, "/admin/users/new", {
        "email": "nina@example.com", "name": "Nina Park", "role": "executive", "timezone": "UTC",
        "capacity": "7", "password": "a-good-password", "skills": ["return"], "teams": [str(world.docs.id)]})
    assert response.status_code == 302  # active left unticked: added inactive
    nina = session.scalar(sa.select(User).where(User.email == "nina@example.com"))
    created = last(session, "user", "created")
    assert created.before is None and created.object_id == nina.id
    assert created.after == {"email": "nina@example.com", "name": "Nina Park", "role": "executive",
                             "skills": ["return"], "capacity": 7, "timezone": "UTC", "teams": ["Documents"],
                             "active": False, "password": "[hidden]"}

    response = post(admin, f"/admin/users/{nina.id}", {
        "name": "Nina Park", "role": "executive", "timezone": "UTC", "capacity": "7", "active": "y",
        "skills": ["return"], "teams": [str(world.docs.id)], "password": "another-good-one"})
    assert response.status_code == 302
    reset = last(session, "user", "password_changed")
    assert (reset.before, reset.after) == ({"password": "[hidden]"}, {"password": "[hidden, changed]"})
    assert last(session, "user", "updated").after == {"active": True}
    session.expire_all()
    stored = stored_text(session)
    assert "a-good-password" not in stored and "another-good-one" not in stored
    assert session.get(User, nina.id).password_hash not in stored


def test_a_checker_designation_is_recorded(app, session, world):
    sup = signed_in(app, "sam@example.com")
    page = text(sup.get("/supervisor/approvals"))
    sup.post(f"/supervisor/teams/{world.returns.id}/checkers",
             data={"user_id": world.priya.id, "enabled": "1", "csrf_token": csrf_token_from(page)})
    entry = last(session, "checker")
    assert (entry.actor_label, entry.object_id, entry.object_label) == (
        "sam@example.com", world.priya.id, "priya@example.com as checker of Returns")
    assert (entry.before, entry.after) == ({"checker": False}, {"checker": True})

    decisions.set_checker(session, world.returns, world.priya, actor=world.sup, enabled=False)
    session.commit()
    assert (last(session, "checker").before, last(session, "checker").after) == (
        {"checker": True}, {"checker": False})


def test_an_approval_threshold_change_is_recorded(admin, session, world):
    url = f"/admin/teams/{world.returns.id}"
    data = {"name": "Returns", "email": "returns@desk.example.com", "work_types": ["return"],
            "auto_assign": "manual", "calendar": "0"}
    assert post(admin, url, {**data, "approval_threshold": "500"}).status_code == 302
    assert post(admin, url, {**data, "approval_threshold": "750.5"}).status_code == 302
    first, second = entries(session, "team")[-2:]
    assert (first.before, first.after) == ({"email": None, "approval_threshold": None},
                                           {"email": "returns@desk.example.com", "approval_threshold": "500.00"})
    assert (second.before, second.after) == ({"approval_threshold": "500.00"}, {"approval_threshold": "750.50"})
    assert second.object_label == "Returns" and second.actor_label == "ada@example.com"


SLA_FILE = """
calendars:
  - name: Berlin office
    timezone: Europe/Berlin
    hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"]}
policies:
  - name: Returns normal
    match: {type: return, team: Returns}
    calendar: Berlin office
    first_response_minutes: 60
    resolution_minutes: 480
"""


def test_an_sla_policy_load_records_each_record_created_and_changed(runner, session, world, tmp_path):
    path = tmp_path / "sla.yaml"
    path.write_text(SLA_FILE)
    assert runner.invoke(args=["sla", "load", str(path)]).exit_code == 0
    policy = last(session, "sla_policy", "created")
    assert policy.actor_label.startswith("cli:") and policy.before is None
    assert policy.object_label == "Returns normal"
    assert policy.after["calendar"] == "Berlin office" and policy.after["match_team"] == "Returns"
    assert policy.after["resolution_minutes"] == 480
    assert last(session, "calendar", "created").after["timezone"] == "Europe/Berlin"

    path.write_text(SLA_FILE.replace("resolution_minutes: 480", "resolution_minutes: 600"))
    assert runner.invoke(args=["sla", "load", str(path)]).exit_code == 0
    changed = last(session, "sla_policy", "updated")
    assert (changed.before, changed.after) == ({"resolution_minutes": 480}, {"resolution_minutes": 600})
    count = len(entries(session))
    assert runner.invoke(args=["sla", "load", str(path)]).exit_code == 0  # the same file again changes nothing
    assert len(entries(session)) == count


def test_a_calendar_edited_in_admin_is_recorded(admin, session, world):
    data = {"name": "Pune office", "timezone": "Asia/Kolkata", "hours_mon": "09:30-18:00", "hours_tue": "",
            "hours_wed": "", "hours_thu": "", "hours_fri": "", "hours_sat": "", "hours_sun": "",
            "holiday_country": "", "holiday_subdivision": "", "closed_dates": ""}
    assert post(admin, "/admin/sla/calendars/new", data).status_code == 302
    calendar = last(session, "calendar", "created")
    assert calendar.actor_label == "ada@example.com" and calendar.after["hours"]["mon"] == ["09:30-18:00"]
    response = post(admin, f"/admin/sla/calendars/{calendar.object_id}", {**data, "closed_dates": "2026-12-24"})
    assert response.status_code == 302
    changed = last(session, "calendar", "updated")
    assert (changed.before, changed.after) == ({"closed_dates": []}, {"closed_dates": ["2026-12-24"]})


def test_routing_rules_are_recorded_when_created_changed_and_deleted(session, world):
    rule = routing_rules.save_rule(session, name="Refunds", keywords=["refund"], set_team_id=world.returns.id,
                                   actor=world.admin)
    routing_rules.save_rule(session, rule, name="Refunds", keywords=["refund", "money back"],
                            set_team_id=world.returns.id, actor=world.admin)
    routing_rules.delete_rule(session, rule, actor=world.admin)
    session.commit()
    created, changed, deleted = entries(session, "routing_rule")
    assert created.action == "created" and created.after["set_team"] == "Returns"
    assert (changed.before, changed.after) == ({"keywords": ["refund"]}, {"keywords": ["refund", "money back"]})
    assert deleted.action == "deleted" and deleted.after is None and deleted.before["name"] == "Refunds"
    assert {e.object_id for e in (created, changed, deleted)} == {rule.id}


def test_a_mailbox_is_recorded_with_its_imap_password_masked(admin, session, world):
    response = post(admin, "/admin/mailboxes", {
        "address": "returns@desk.example.com", "type": "return", "team": "Returns", "priority": "normal",
        "imap_host": "imap.example.com", "imap_user": "returns", "imap_password": "s3cret-imap-pw",
        "imap_tls": "ssl", "imap_folder": "INBOX"})
    assert response.status_code == 302
    created = last(session, "mailbox", "created")
    assert created.after["imap_password"] == "[hidden]" and created.after["team"] == "Returns"
    box = session.scalar(sa.select(Mailbox))
    response = post(admin, f"/admin/mailboxes/{box.id}", {
        "active": "y", "type": "return", "team": "Documents", "priority": "high", "imap_host": "imap.example.com",
        "imap_user": "returns", "imap_password": "even-more-s3cret", "imap_tls": "ssl", "imap_folder": "INBOX"})
    assert response.status_code == 302
    changed = last(session, "mailbox", "updated")
    assert changed.before == {"team": "Returns", "priority": "normal", "imap_password": "[hidden]"}
    assert changed.after == {"team": "Documents", "priority": "high", "imap_password": "[hidden, changed]"}
    stored = stored_text(session)
    assert "s3cret-imap-pw" not in stored and "even-more-s3cret" not in stored


def test_check_settings_and_exchange_rates_from_the_command_line_are_recorded(runner, session, world):
    result = runner.invoke(args=["checks", "settings", "Returns", "--return-window-days", "45",
                                 "--base-currency", "usd"])
    assert result.exit_code == 0, result.output
    settings = last(session, "check_settings")
    assert (settings.object_id, settings.object_label) == (world.returns.id, "Returns")
    assert (settings.before, settings.after) == ({"base_currency": None, "return_window_days": None},
                                                 {"base_currency": "USD", "return_window_days": 45})
    assert settings.actor_label.startswith("cli:")

    assert runner.invoke(args=["checks", "rate", "USD", "EUR", "0.92", "--valid-from", "2026-11-01"]).exit_code == 0
    assert runner.invoke(args=["checks", "rate", "USD", "EUR", "0.93", "--valid-from", "2026-11-01"]).exit_code == 0
    created, corrected = entries(session, "exchange_rate")
    assert created.object_label == "USD to EUR from 2026-11-01" and created.before is None
    assert created.after == {"from_currency": "USD", "to_currency": "EUR", "valid_from": "2026-11-01",
                             "rate": "0.92"}
    assert (corrected.before, corrected.after) == ({"rate": "0.9200000000"}, {"rate": "0.93"})


def test_an_exchange_rate_set_by_a_service_names_its_actor(session, world):
    exchange_rates.set_rate(session, "gbp", "eur", Decimal("1.17"), date(2026, 11, 1), actor=world.admin)
    session.commit()
    assert last(session, "exchange_rate").actor_label == "ada@example.com"


def test_canned_responses_are_recorded(session, world):
    response = canned_responses.save(session, actor=world.sup, title="Refund approved", body="Dear {requester_name},",
                                     team_id=world.returns.id)
    canned_responses.save(session, response, actor=world.sup, title="Refund approved", body="Hello {requester_name},",
                          team_id=world.returns.id, active=False)
    canned_responses.delete(session, response, actor=world.admin)
    session.commit()
    created, changed, deleted = entries(session, "canned_response")
    assert created.after == {"title": "Refund approved", "body": "Dear {requester_name},", "active": True,
                             "team": "Returns"}
    assert changed.before == {"body": "Dear {requester_name},", "active": True}
    assert changed.after == {"body": "Hello {requester_name},", "active": False}
    assert (deleted.action, deleted.actor_label) == ("deleted", "ada@example.com")


def test_an_api_token_is_recorded_without_the_token_or_its_hash(runner, session, world):
    result = runner.invoke(args=["users", "token", "sam@example.com", "--name", "billing system"])
    assert result.exit_code == 0
    value = result.output.strip()
    entry = last(session, "api_token", "created")
    row = session.scalar(sa.select(ApiToken))
    assert (entry.object_id, entry.object_label) == (row.id, "billing system of sam@example.com")
    assert entry.after == {"user": "sam@example.com", "name": "billing system", "token": "[hidden]",
                           "scopes": ["read", "write"], "expires_at": row.expires_at.isoformat(), "revoked_at": None}
    stored = stored_text(session)
    assert value not in stored and row.token_hash not in stored


def test_sign_ins_and_failed_sign_ins_are_recorded_with_the_email_tried(app, client, session, world):
    auth = Auth(client)
    assert auth.login("priya@example.com").status_code == 302
    assert auth.login("priya@example.com", "not-her-password").status_code == 200
    assert auth.login("Nobody@Example.com", "whatever-password").status_code == 200
    ok, wrong, unknown = entries(session, "sign_in")
    assert (ok.action, ok.actor_label, ok.object_id, ok.object_label) == (
        "sign_in", "priya@example.com", world.priya.id, "priya@example.com")
    assert "remote_addr" in ok.after
    assert (wrong.action, wrong.actor_label, wrong.object_id) == ("sign_in_failed", "anonymous", world.priya.id)
    assert wrong.after["reason"] == "wrong password" and wrong.after["email"] == "priya@example.com"
    assert (unknown.action, unknown.object_id, unknown.object_label) == ("sign_in_failed", None, "nobody@example.com")
    assert unknown.after["email"] == "Nobody@Example.com" and unknown.after["reason"] == "no such account"
    stored = stored_text(session)
    assert "not-her-password" not in stored and "whatever-password" not in stored

    auth.logout()
    assert last(session, "sign_in").action == "sign_out"


# --- the admin page -----------------------------------------------------------------------------------

def some_entries(session, world, count):
    for n in range(count):
        audit.changed(session, world.admin if n % 2 else "cli:root", "team", world.returns,
                      {"approval_threshold": str(n)}, {"approval_threshold": str(n + 1)},
                      now=datetime(2020, 11, 1, tzinfo=timezone.utc) + timedelta(days=n))
    session.commit()


def test_the_audit_page_filters_and_pages_by_keyset(admin, session, world):
    some_entries(session, world, 60)
    page = text(admin.get("/admin/audit"))
    shown = [int(n) for n in re.findall(r'data-entry="(\d+)"', page)]
    assert len(shown) == 50 and shown == sorted(shown, reverse=True)
    assert 'href="/admin/audit"' in page and "Audit trail" in page
    older = re.search(r'href="(/admin/audit\?before=\d+)"', page).group(1)
    rest = [int(n) for n in re.findall(r'data-entry="(\d+)"', text(admin.get(older)))]
    assert rest and max(rest) < min(shown)

    everything = {e.id for e in entries(session)}
    assert set(shown) | set(rest) == everything  # no entry skipped or shown twice

    by_cli = text(admin.get("/admin/audit?who=CLI:"))
    assert by_cli.count("data-entry=") == 30 and "ada@example.com</td>" not in by_cli
    teams = text(admin.get("/admin/audit?kind=team&start=2020-11-03&end=2020-11-05"))
    assert teams.count('data-kind="team"') == 3
    assert text(admin.get("/admin/audit?kind=user&end=2020-12-31")).count("data-entry=") == 0
    bad = admin.get("/admin/audit?start=yesterday&kind=nonsense")
    assert bad.status_code == 422 and "data-entry=" not in text(bad)


def test_the_export_is_csv_safe_for_spreadsheets_and_json_lines(admin, session, world):
    canned_responses.save(session, actor=world.admin, title="=HYPERLINK(\"http://evil\")", body="Hello",
                          team_id=None)
    some_entries(session, world, 3)
    response = admin.get("/admin/audit/export.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="audit_')
    body = text(response)
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body[1:])))
    assert rows[0][:4] == ["Id", "Time (UTC)", "Who", "Action"]
    labels = [row[6] for row in rows[1:]]
    assert "'=HYPERLINK(\"http://evil\")" in labels and "=HYPERLINK(\"http://evil\")" not in labels
    assert all(row[9] for row in rows[1:])  # every entry sealed, with its position and hash

    response = admin.get("/admin/audit/export.jsonl?kind=team&start=2020-11-02&end=2020-11-03")
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    lines = [json.loads(line) for line in text(response).splitlines()]
    assert [(r["object_type"], r["before"], r["after"]) for r in lines] == [
        ("team", {"approval_threshold": "1"}, {"approval_threshold": "2"}),
        ("team", {"approval_threshold": "2"}, {"approval_threshold": "3"})]
    assert lines[0]["at"] == "2020-11-02T00:00:00.000000Z" and len(lines[0]["chain_hash"]) == 64
    assert admin.get("/admin/audit/export.jsonl?start=nope").status_code == 422


def test_the_export_streams_a_large_period_in_chunks(admin, session, world, monkeypatch):
    from queue_app.services.audit import export

    monkeypatch.setattr(export, "CHUNK", 7)
    some_entries(session, world, 30)
    reads = []
    original = export.iter_period

    def counting(session, filters, chunk=7):
        for row in original(session, filters, chunk=chunk):
            reads.append(row.id)
            yield row

    monkeypatch.setattr(export, "iter_period", counting)
    response = admin.get("/admin/audit/export.jsonl")
    assert response.is_streamed
    ids = [json.loads(line)["id"] for line in text(response).splitlines()]
    assert ids == sorted(ids) and len(ids) == len(entries(session)) and reads == ids


def test_only_admins_see_the_trail(app, client, world):
    for url in ("/admin/audit", "/admin/audit/export.csv", "/admin/audit/export.jsonl"):
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    for email in ("sam@example.com", "priya@example.com"):
        other = signed_in(app, email)
        for url in ("/admin/audit", "/admin/audit/export.csv", "/admin/audit/export.jsonl"):
            assert other.get(url).status_code == 403, (email, url)
        assert other.post("/admin/audit/seal", data={"csrf_token": token(other)}).status_code == 403
        assert 'href="/admin/audit"' not in text(other.get("/admin/canned"))


def test_admins_seal_pending_entries_from_the_page_with_a_csrf_token(app, admin, session, world, monkeypatch):
    monkeypatch.delitem(app.extensions, "backdesk.audit_sealer")  # no sealing after commit
    some_entries(session, world, 2)
    page = text(admin.get("/admin/audit"))
    assert 'id="chain-seal"' in page and "not sealed yet" in page
    assert admin.post("/admin/audit/seal", data={}).status_code == 400  # no CSRF token
    assert chain.status(session).pending["audit_entries"] > 0
    response = admin.post("/admin/audit/seal", data={"csrf_token": csrf_token_from(page), "next": "/admin/audit"})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/audit"
    session.expire_all()
    assert sum(chain.status(session).pending.values()) == 0
    assert "Every entry is sealed." in text(admin.get("/admin/audit"))


# --- the chain --------------------------------------------------------------------------------------

@pytest.fixture
def trail(session, world, make_item):
    """Items with events and some configuration changes, all committed (and so sealed)."""
    items = [make_item(team=world.returns) for _ in range(3)]
    session.commit()
    for item in items:
        record_event(session, item, "note_added", world.priya, {"body": f"note on {item.ref}"})
    some_entries(session, world, 3)
    session.commit()
    return items


def event_ids(session):
    return session.scalars(sa.select(Event.id).order_by(Event.id)).all()


def test_every_commit_that_writes_entries_is_sealed_and_the_chain_verifies(runner, session, trail):
    status = chain.status(session)
    assert status.pending == {"events": 0, "audit_entries": 0}
    total = len(event_ids(session)) + len(entries(session))
    assert status.head_seq == total == session.scalar(sa.select(sa.func.count()).select_from(AuditSeal))
    seals = session.execute(sa.select(AuditSeal).order_by(AuditSeal.seq)).scalars().all()
    for name in ("events", "audit_entries"):
        ids = [s.entry_id for s in seals if s.entry_table == name]
        assert ids == sorted(ids)  # each table in id order

    result = verify(runner)
    assert result.exit_code == 0, result.output
    assert f"audit chain intact: {total} entries sealed, head at position {total}" in result.output
    assert status.head_hash in result.output and "every entry is sealed" in result.output


def test_editing_an_item_events_data_breaks_the_chain_at_that_event(runner, session, trail):
    victim = event_ids(session)[4]
    with _db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE events SET data = CAST(:data AS JSON) WHERE id = :id"),
                     {"data": '{"body": "nothing to see"}', "id": victim})
    result = verify(runner)
    assert result.exit_code != 0
    assert f"audit chain BROKEN: events #{victim} (chain position" in result.output
    assert "was edited after it was sealed" in result.output
    assert "Traceback" not in result.output


def test_editing_a_configuration_change_breaks_the_chain_there(runner, session, trail):
    victim = entries(session)[-1]
    with _db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entries SET actor_label = 'someone-else' WHERE id = :id"),
                     {"id": victim.id})
    result = verify(runner)
    assert result.exit_code != 0 and f"audit_entries #{victim.id} (chain position" in result.output
    assert "was edited" in result.output


def test_deleting_an_item_event_breaks_the_chain_and_names_it(runner, session, trail):
    victim = event_ids(session)[2]
    with _db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM events WHERE id = :id"), {"id": victim})
    result = verify(runner)
    assert result.exit_code != 0
    assert f"audit chain BROKEN: events #{victim} (chain position" in result.output and "was deleted" in result.output


def test_deleting_an_event_with_its_seal_leaves_a_gap_in_the_chain(runner, session, trail):
    victim = event_ids(session)[2]
    with _db.engine.begin() as conn:
        position = conn.execute(sa.text("SELECT seq FROM audit_seals WHERE entry_table = 'events' AND "
                                        "entry_id = :id"), {"id": victim}).scalar_one()
        conn.execute(sa.text("DELETE FROM events WHERE id = :id"), {"id": victim})
        conn.execute(sa.text("DELETE FROM audit_seals WHERE seq = :seq"), {"seq": position})
    result = verify(runner)
    assert result.exit_code != 0
    assert f"chain positions {position} to {position} are missing" in result.output


def test_deleting_the_last_entries_with_their_seals_is_noticed(runner, session, trail):
    with _db.engine.begin() as conn:
        top = conn.execute(sa.text("SELECT max(seq) FROM audit_seals")).scalar_one()
        conn.execute(sa.text("DELETE FROM audit_entries WHERE id IN (SELECT entry_id FROM audit_seals "
                             "WHERE seq = :seq AND entry_table = 'audit_entries')"), {"seq": top})
        conn.execute(sa.text("DELETE FROM audit_seals WHERE seq = :seq"), {"seq": top})
    result = verify(runner)
    assert result.exit_code != 0
    assert f"the chain stops at position {top - 1} but its head is at {top}" in result.output


def insert_event(conn, event_id, item_id):
    conn.execute(sa.text("INSERT INTO events (id, work_item_id, kind, actor_label, at, data) "
                         "VALUES (:id, :item, 'status_changed', 'mallory@example.com', :at, CAST(:data AS JSON))"),
                 {"id": event_id, "item": item_id, "at": datetime(2026, 1, 1) if database_is("sqlite")
                  else datetime(2026, 1, 1, tzinfo=timezone.utc), "data": '{"to": "resolved"}'})


def test_an_event_inserted_out_of_order_breaks_the_chain_and_is_named(runner, session, trail):
    base = max(event_ids(session)) + 1_000_000  # far from anything the id sequence will hand out
    with _db.engine.begin() as conn:  # a later event, written by hand but sealed like any other
        insert_event(conn, base + 10, trail[0].id)
    assert runner.invoke(args=["audit", "seal"]).exit_code == 0
    assert verify(runner).exit_code == 0

    with _db.engine.begin() as conn:  # slipped in before it, after the fact
        insert_event(conn, base + 5, trail[0].id)
    result = verify(runner)
    assert result.exit_code != 0
    assert (f"audit chain BROKEN: events #{base + 5} was inserted out of order: it is not in the chain, "
            f"but its id is below the last sealed events entry (#{base + 10})") in result.output
    assert runner.invoke(args=["audit", "seal"]).exit_code == 0  # the sealer never takes it in
    assert verify(runner).exit_code != 0


def test_entries_not_sealed_yet_are_counted_apart_and_are_no_failure(app, runner, session, world, make_item,
                                                                     monkeypatch):
    monkeypatch.delitem(app.extensions, "backdesk.audit_sealer")  # as if every after-commit seal had failed
    make_item(team=world.returns)
    some_entries(session, world, 1)
    pending = chain.status(session).pending
    assert pending["events"] > 0 and pending["audit_entries"] == 1

    result = verify(runner)
    assert result.exit_code == 0, result.output
    assert f"{sum(pending.values())} entries not sealed yet" in result.output

    result = runner.invoke(args=["audit", "seal"])
    assert result.exit_code == 0 and f"sealed {sum(pending.values())} entries" in result.output
    assert "every entry is sealed" in verify(runner).output


def test_the_scheduler_seals_periodically(app, session, world, monkeypatch):
    from workers import schedule

    assert ("audit-seal", "AUDIT_SEAL_SECONDS", schedule._audit_seal) in schedule.PERIODIC
    monkeypatch.delitem(app.extensions, "backdesk.audit_sealer")
    some_entries(session, world, 2)
    assert chain.status(session).pending["audit_entries"] > 0
    schedule._audit_seal()
    assert sum(chain.status(session).pending.values()) == 0


def test_sealing_large_backlogs_goes_in_batches(app, session, world, make_item, monkeypatch):
    monkeypatch.delitem(app.extensions, "backdesk.audit_sealer")
    for _ in range(4):
        make_item(team=world.returns)
    some_entries(session, world, 4)
    start = chain.status(session)
    waiting = sum(start.pending.values())
    first = chain.seal(session, limit=3)
    session.commit()
    assert first.count == 6  # three of each table
    while chain.seal(session, limit=3).count:
        session.commit()
    session.commit()
    assert chain.status(session).head_seq == start.head_seq + waiting and chain.verify(session).ok


def test_two_concurrent_writers_keep_the_chain_valid(app, session, world, make_item):
    items = [make_item(team=world.returns) for _ in range(2)]
    session.commit()
    errors = []

    def write(item_id, actor_id, rounds):
        try:
            with app.app_context():
                for n in range(rounds):
                    with Session(bind=_db.engine) as own:
                        item, actor = own.get(WorkItem, item_id), own.get(User, actor_id)
                        record_event(own, item, "note_added", actor, {"n": n})
                        audit.changed(own, actor, "team", own.get(Team, item.team_id), {"n": n}, {"n": n + 1})
                        record_event(own, item, "note_added", actor, {"n": n, "again": True})
                        own.commit()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(item.id, user.id, 15))
               for item, user in zip(items, (world.priya, world.sup))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    while chain.seal(session).count:  # whatever a busy after-commit seal left
        session.commit()
    session.commit()
    result = chain.verify(session)
    assert result.ok, [p.message for p in result.problems]
    assert sum(result.pending.values()) == 0
    assert result.sealed == len(event_ids(session)) + len(entries(session))


@pytest.mark.skipif(not database_is("postgresql"), reason="SQLite lets one writer at a time in anyway")
def test_an_entry_committed_after_a_later_one_is_still_sealed_in_order(app, session, world, make_item):
    """PostgreSQL: A takes an event id, B takes a higher one and commits first; B's seal must not
    seal past A's uncommitted entry (it waits for A), so A's entry is never left out of the chain."""
    item = make_item(team=world.returns)
    session.commit()
    wrote, go = threading.Event(), threading.Event()
    errors = []

    def slow_writer():
        try:
            with app.app_context(), Session(bind=_db.engine) as own:
                record_event(own, own.get(WorkItem, item.id), "note_added", "a", {"who": "A"})
                own.flush()
                wrote.set()
                go.wait(10)
                own.commit()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert wrote.wait(10)
    with Session(bind=_db.engine) as other:
        record_event(other, other.get(WorkItem, item.id), "note_added", "b", {"who": "B"})
        other.commit()  # its after-commit seal finds A in flight and leaves B for later
    session.rollback()
    assert chain.status(session).pending["events"] == 1  # B's, committed but not sealed past A's
    go.set()
    thread.join()
    assert errors == []
    session.rollback()
    notes = session.execute(sa.select(Event.id, Event.actor_label).where(Event.kind == "note_added")
                            .order_by(Event.id)).all()
    assert [label for _, label in notes] == ["a", "b"]  # A took the lower id, and committed last
    result = chain.verify(session)
    assert result.ok, [p.message for p in result.problems]
    assert sum(result.pending.values()) == 0


def test_verify_on_a_database_without_the_chain_says_so(tmp_path):
    cfg = TestingConfig.load()
    cfg.SQLALCHEMY_DATABASE_URI = f"sqlite:///{tmp_path / 'old.db'}"
    cfg.INSTANCE_DIR = str(tmp_path)
    cfg.OUTBOX_DELIVER_ON_COMMIT = False
    old = create_app(cfg)
    with old.app_context():
        flask_migrate.upgrade(directory=MIGRATIONS, revision="e1f2a3b4c5d6")  # before the audit trail
        runner = old.test_cli_runner()
        for command in ("verify", "seal"):
            result = runner.invoke(args=["audit", command])
            assert result.exit_code == 1
            assert "this database has no audit chain (missing tables audit_seals, audit_chain_head, " \
                   "audit_entries); run `flask --app wsgi db upgrade` first" in result.output
            assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
        _db.session.remove()
        _db.engine.dispose()


def test_the_head_row_is_single(session, trail):
    assert session.scalar(sa.select(sa.func.count()).select_from(AuditChainHead)) == 1
    with pytest.raises(sa.exc.IntegrityError):
        with _db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO audit_chain_head (id, last_seq, last_hash, events_sealed_to, "
                                 "changes_sealed_to) VALUES (2, 0, '', 0, 0)"))


# --- the front-office form's acknowledgement ---------------------------------------------------------

def intake_data(client, **overrides):
    data = {"type": "return", "priority": "", "subject": "Customer wants a refund", "description": "Too small.",
            "requester_email": "anna@example.com", "requester_name": "Anna K",
            "return-order_number": "ORD-555", "return-purchase_date": "2026-10-01", "return-amount": "19.99",
            "return-currency": "eur", "return-reason": "Wrong size", "csrf_token": token(client, "/submit")}
    data.update(overrides)
    return data


def test_a_request_filed_through_the_form_is_acknowledged_to_the_customer(app, client, auth, session, world):
    auth.login("lena@example.com")
    response = client.post("/submit", data=intake_data(client))
    assert response.status_code == 302
    item = session.scalar(sa.select(WorkItem))
    ack = session.scalar(sa.select(Message).where(Message.work_item_id == item.id))
    assert (ack.kind, ack.is_automatic, ack.send_status, ack.to_addresses) == (
        "outbound", True, "queued", "anna@example.com")
    assert ack.subject == f"[{item.ref}] Customer wants a refund" and ack.in_reply_to is None
    assert ack.body_text.startswith("Hello Anna K,")
    assert f'filed it as {item.ref}: "Customer wants a refund"' in ack.body_text and "Returns team" in ack.body_text
    jobs = session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == SEND_JOB)).all()
    assert [job.args for job in jobs] == [[ack.id]]
    kinds = session.scalars(sa.select(Event.kind).where(Event.work_item_id == item.id).order_by(Event.id)).all()
    assert "acknowledged" in kinds


def test_the_form_follows_intakes_acknowledgement_rules(client, auth, session, world, app, monkeypatch):
    monkeypatch.setitem(app.config, "INTAKE_ACKS_PER_SENDER_HOUR", 1)
    auth.login("lena@example.com")
    assert client.post("/submit", data=intake_data(client)).status_code == 302
    assert client.post("/submit", data=intake_data(client, subject="Again")).status_code == 302
    assert client.post("/submit", data=intake_data(client, subject="Bounce",
                                                   requester_email="mailer-daemon@example.com")).status_code == 302
    first, second, third = session.scalars(sa.select(WorkItem).order_by(WorkItem.id)).all()
    assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 1
    suppressed = session.scalars(sa.select(Event).where(Event.kind == "ack_suppressed").order_by(Event.id)).all()
    assert [(e.work_item_id, e.data["reason"]) for e in suppressed] == [
        (second.id, "more than 1 acknowledgements to this sender in an hour"),
        (third.id, "mailer-daemon or postmaster")]
