"""Fields from the mail end to end: an email filed through intake (one at a time and by the bulk
import) gets its fields, the item page marks them "from the email", the checks run with them; and
the admin page for a team's patterns (admins only, CSRF, refused patterns, try it, audit trail)."""
import re

import pytest
import sqlalchemy as sa

from queue_app.extensions import db
from queue_app.models import ConfigChange, Event, MailFieldPattern, WorkItem
from queue_app.services.checks import runner as checks_runner
from queue_app.services.intake import bulk as intake_bulk
from queue_app.services.intake import filing, mail_fields, mailboxes
from queue_app.services.items import lifecycle
from tests.conftest import Auth, csrf_token_from
from tests.integration.test_intake import mail, mail_settings  # noqa: F401 (autouse: our mail domain)

RETURNS = "returns@backdesk.example.com"
DOCS = "docs@backdesk.example.com"


def text(response):
    return response.get_data(as_text=True)


def deliver(session, raw):
    outcome = filing.process(session, filing.receive(session, raw, source="smtp"))
    session.commit()
    return outcome


def events(session, item, kind):
    return session.scalars(sa.select(Event).where(Event.work_item_id == item.id, Event.kind == kind)).all()


@pytest.fixture
def world(session, make_team, make_user):
    returns = make_team(name="Returns", work_types=["return"])
    docs = make_team(name="Documents", work_types=["document_verification"])
    mailboxes.create_mailbox(session, address=RETURNS, type="return", team_name="Returns", priority="normal")
    mailboxes.create_mailbox(session, address=DOCS, type="document_verification", team_name="Documents",
                             priority="normal")
    admin = make_user(email="ada@example.com", name="Ada Admin", role="admin")
    sup = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[returns])
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    session.commit()
    return type("World", (), dict(returns=returns, docs=docs, admin=admin, sup=sup, priya=priya))


# --- intake ----------------------------------------------------------------------------------------------

def test_a_return_email_gets_its_order_number_and_the_check_passes(client, auth, session, world):
    raw = mail("Return for order ORD-778899", to=RETURNS,
               body="Hello,\nthe kettle arrived broken. Please refund 45,00 €.\n\n> order ORD-000001\n")

    outcome = deliver(session, raw)

    item = outcome.item
    assert (item.type, item.order_number, item.amount, item.currency) == ("return", "ORD-778899", 45, "EUR")
    assert item.fields_from_email == ["amount", "currency", "order_number"]
    [event] = events(session, item, "fields_from_email")
    assert event.data == {"order_number": "ORD-778899", "amount": "45.00", "currency": "EUR"}

    results = {r.name: r for r in checks_runner.run_checks(session, item.id)}
    session.commit()
    assert results["order_number_format"].status == "passed"
    assert "ORD-778899" in results["order_number_format"].message
    assert results["required_fields"].status == "passed"

    auth.login("priya@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    details = re.search(r'<dl class="facts" id="item-fields">.*?</dl>', page, re.S).group(0)
    assert details.count('class="badge from-email"') == 3
    assert re.search(r"ORD-778899 <span class=\"badge from-email\"", details)


def test_an_ambiguous_email_leaves_the_field_to_the_requester(session, world):
    item = deliver(session, mail("Return for order ORD-111111", to=RETURNS,
                                 body="Sorry, I meant order ORD-222222.\n")).item

    assert item.order_number is None and item.fields_from_email is None
    assert events(session, item, "fields_from_email") == []
    results = {r.name: r for r in checks_runner.run_checks(session, item.id)}
    assert results["order_number_format"].message == "No order number: ask the requester for it"


def test_a_person_changing_a_field_removes_its_marker(session, world):
    item = deliver(session, mail("Passport check", to=DOCS,
                                 body="Passport number: X1234567, expires 31/12/2030\n")).item
    assert item.fields_from_email == ["document_number", "expires_on"]

    lifecycle.update_fields(session, item, actor=world.admin, fields={"document_number": "X7654321"})
    session.commit()

    assert item.fields_from_email == ["expires_on"]


def test_the_bulk_import_gets_the_same_fields(session, world):
    raws = [mail(f"Return for order ORD-77889{n}", to=RETURNS, message_id=f"<bulk-{n}@customer.example.com>",
                 body="Betrag: 12,50 €\n") for n in range(3)]

    counts = intake_bulk.import_raw_messages(session, raws, batch=2)

    assert counts["created"] == 3
    items = session.scalars(sa.select(WorkItem).order_by(WorkItem.id)).all()
    assert [(i.order_number, str(i.amount), i.currency) for i in items] == [
        (f"ORD-77889{n}", "12.50", "EUR") for n in range(3)]
    assert all(i.fields_from_email == ["amount", "currency", "order_number"] for i in items)
    assert all(len(events(session, i, "fields_from_email")) == 1 for i in items)


def test_if_taking_fields_fails_the_email_is_filed_without_them(session, world, monkeypatch):
    def broken(*args):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(mail_fields, "extract", broken)
    outcome = deliver(session, mail("Return for order ORD-778899", to=RETURNS))

    assert outcome.status == "created" and outcome.item.order_number is None


def test_a_teams_own_pattern_replaces_the_default_for_its_field(session, world):
    session.add(MailFieldPattern(team_id=world.returns.id, field="order_number", pattern=r"auftrag\s+(\d{6})"))
    session.commit()

    item = deliver(session, mail("Auftrag 445566 (order ORD-778899)", to=RETURNS, body="Betrag: 9,99 €\n")).item

    assert (item.order_number, str(item.amount)) == ("445566", "9.99")


# --- the admin page -----------------------------------------------------------------------------------

@pytest.fixture
def admin(client, auth, world):
    auth.login("ada@example.com")
    return client


def post(client, url, data, page):
    return client.post(url, data={"csrf_token": csrf_token_from(text(client.get(page))), **data})


def field_error(html, field_id):
    match = re.search(rf'<p class="error" id="{field_id}-error">(.*?)</p>', html, re.S)
    return match.group(1) if match else None


def test_only_admins_reach_the_pattern_pages(app, client, world):
    urls = ["/admin/mail-fields", f"/admin/mail-fields?team={world.returns.id}",
            f"/admin/mail-fields/{world.returns.id}/new"]
    for url in urls:
        assert client.get(url).status_code == 302
    for email in ("sam@example.com", "priya@example.com"):
        other = app.test_client()
        Auth(other).login(email)
        csrf = csrf_token_from(text(other.get("/")))
        for url in urls:
            assert other.get(url).status_code == 403, (email, url)
        response = other.post(f"/admin/mail-fields/{world.returns.id}/new",
                              data={"csrf_token": csrf, "field": "order_number", "pattern": "(\\d+)",
                                    "position": "1", "active": "y"})
        assert response.status_code == 403
    assert db.session.scalar(sa.select(sa.func.count()).select_from(MailFieldPattern)) == 0


def test_the_page_lists_the_defaults_and_has_csrf_tokens(admin, world):
    page = text(admin.get(f"/admin/mail-fields?team={world.returns.id}"))
    assert 'name="csrf_token"' in page and "uses the defaults" in page
    assert 'id="defaults"' in page and "Bestellung" in page
    assert 'href="/admin/mail-fields"' in page  # in the admin navigation
    form = text(admin.get(f"/admin/mail-fields/{world.returns.id}/new"))
    assert 'name="csrf_token"' in form


def test_a_post_without_csrf_token_changes_nothing(admin, session, world):
    response = admin.post(f"/admin/mail-fields/{world.returns.id}/new",
                          data={"field": "order_number", "pattern": "(\\d+)", "position": "1", "active": "y"})
    assert response.status_code == 400
    assert session.scalar(sa.select(sa.func.count()).select_from(MailFieldPattern)) == 0


@pytest.mark.parametrize("pattern, message", [
    ("order (\\d+", "not a valid regular expression"),
    ("order \\d+", "exactly one capture group"),
    ("(order) (\\d+)", "exactly one capture group"),
    ("(\\w+)+!", "repeats a group that itself repeats without limit"),
])
def test_an_invalid_pattern_is_refused_next_to_the_field(admin, session, world, pattern, message):
    url = f"/admin/mail-fields/{world.returns.id}/new"
    response = post(admin, url, {"field": "order_number", "pattern": pattern, "position": "10", "active": "y"}, url)

    assert response.status_code == 422
    assert message in field_error(text(response), "pattern").lower()
    assert session.scalar(sa.select(sa.func.count()).select_from(MailFieldPattern)) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(ConfigChange)
                          .where(ConfigChange.object_type == "mail_field_pattern")) == 0


def test_add_edit_and_switch_off_a_pattern_each_in_the_audit_trail(admin, session, world):
    team = world.returns
    new = f"/admin/mail-fields/{team.id}/new"
    response = post(admin, new, {"field": "order_number", "pattern": r"auftrag\s+(\d{6})", "position": "10",
                                 "active": "y"}, new)
    assert response.status_code == 302
    pattern = session.scalars(sa.select(MailFieldPattern)).one()
    assert (pattern.team_id, pattern.field, pattern.active) == (team.id, "order_number", True)
    assert r"auftrag\s+(\d{6})" in text(admin.get(f"/admin/mail-fields?team={team.id}"))

    edit = f"/admin/mail-fields/{team.id}/{pattern.id}"
    assert post(admin, edit, {"field": "order_number", "pattern": r"auftrag\s+(\d{7})", "position": "10",
                              "active": "y"}, edit).status_code == 302
    assert post(admin, f"{edit}/deactivate", {}, edit).status_code == 302
    session.expire_all()
    assert session.get(MailFieldPattern, pattern.id).active is False

    entries = session.scalars(sa.select(ConfigChange).where(ConfigChange.object_type == "mail_field_pattern")
                              .order_by(ConfigChange.id)).all()
    assert [e.action for e in entries] == ["created", "updated", "updated"]
    assert all(e.actor_label.startswith("Ada Admin") or "ada@example.com" in e.actor_label for e in entries)
    assert entries[0].before is None and entries[0].after["pattern"] == r"auftrag\s+(\d{6})"
    assert entries[0].after["team"] == "Returns"
    assert entries[1].before == {"pattern": r"auftrag\s+(\d{6})"}
    assert entries[1].after == {"pattern": r"auftrag\s+(\d{7})"}
    assert entries[2].before == {"active": True} and entries[2].after == {"active": False}
    assert entries[0].object_label == "Returns: order_number"


def test_a_pattern_of_another_team_is_not_found_under_this_one(admin, session, world):
    pattern = MailFieldPattern(team_id=world.docs.id, field="document_number", pattern=r"doc\s+(\w+)")
    session.add(pattern)
    session.commit()
    assert admin.get(f"/admin/mail-fields/{world.returns.id}/{pattern.id}").status_code == 404
    assert admin.get(f"/admin/mail-fields/{world.docs.id}/{pattern.id}").status_code == 200


def test_garbage_in_the_pattern_forms_never_gives_a_500(admin, world):
    garbage = ["", " ", "\x00", "(", "' OR 1=1 --", "<script>alert(1)</script>", "9" * 40, "-1", "日本語"]
    team = world.returns.id
    forms = {f"/admin/mail-fields/{team}/new": {"field": "order_number", "pattern": r"(\d+)", "position": "1"},
             f"/admin/mail-fields/{team}/try": {"work_type": "return", "subject": "s", "body": "b"}}
    for url, data in forms.items():
        csrf = csrf_token_from(text(admin.get(f"/admin/mail-fields?team={team}")))
        for key in data:
            for junk in garbage:
                response = admin.post(url, data={**data, key: junk, "csrf_token": csrf})
                assert response.status_code in (200, 302, 422), (url, key, junk, response.status_code)


def test_try_it_shows_what_a_pasted_email_gives(admin, world):
    page = f"/admin/mail-fields?team={world.returns.id}"
    response = post(admin, f"/admin/mail-fields/{world.returns.id}/try",
                    {"work_type": "return", "subject": "Rückerstattung für Bestellung ORD-123456",
                     "body": "Betrag: 1.234,56 €\nund Bestellung ORD-654321?"}, page)

    assert response.status_code == 200
    result = re.search(r'<table id="try-result">.*?</table>', text(response), re.S).group(0)
    assert "<strong>1234.56</strong>" in result and "<strong>EUR</strong>" in result
    assert "several different values (ORD-123456, ORD-654321)" in result
