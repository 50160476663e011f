"""The web UI through the test client: real forms, real CSRF tokens, real sessions."""
import re
from datetime import timedelta

import sqlalchemy as sa
from flask import render_template

from queue_app.models import Approval, Event, Message, OutboxJob, User, WorkItem
from queue_app.models.base import utcnow
from queue_app.services.checks import runner
from queue_app.services.items import lifecycle, state
from tests.conftest import Auth, csrf_token_from
from tests.factories import PASSWORD


def new_client(app):
    return app.test_client()


def text(response):
    return response.get_data(as_text=True)


def token(client, url="/"):
    return csrf_token_from(text(client.get(url)))


def refs_in(html, table_id):
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S)
    return re.findall(r'<tr data-ref="(BO-\d+)"', table.group(0)) if table else []


def reload(session, item):
    session.expire_all()
    return session.get(WorkItem, item.id)


def events_of(session, item):
    return [e.kind for e in session.scalars(sa.select(Event).where(Event.work_item_id == item.id).order_by(Event.id))]


# --- signing in and out -------------------------------------------------------------------------------------

def test_login_and_logout(client, auth, world):
    assert 'name="csrf_token"' in text(client.get("/login"))
    response = auth.login("priya@example.com")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    page = text(client.get("/"))
    assert "Priya Nair" in page and "My queue" in page
    response = auth.logout()
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert client.get("/").status_code == 302


def test_pages_need_login(client, world, make_item):
    item = make_item(team=world.returns)
    for url in ("/", f"/items/{item.ref}", "/supervisor", "/submit", "/settings"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/login?next="), url


def test_wrong_password_and_unknown_email_get_the_same_message(client, auth, world):
    wrong = auth.login("priya@example.com", "not-the-password")
    unknown = auth.login("nobody@example.com", "whatever-it-is")
    assert wrong.status_code == unknown.status_code == 200
    assert "Unknown email or wrong password." in text(wrong)
    assert "Unknown email or wrong password." in text(unknown)
    assert client.get("/").status_code == 302  # still signed out


def test_next_redirect_stays_on_this_site(client, world):
    for target, expected in (("/settings", "/settings"), ("https://evil.example/", "/"), ("//evil.example/x", "/"),
                             ("/\\evil.example", "/")):
        page = client.get("/login", query_string={"next": target})
        response = client.post("/login", query_string={"next": target}, data={
            "email": "priya@example.com", "password": PASSWORD, "csrf_token": csrf_token_from(text(page))})
        assert response.headers["Location"] == expected, target


def test_logout_ends_this_browser_only(app, client, auth, world):
    other = new_client(app)
    Auth(other).login("priya@example.com")
    auth.login("priya@example.com")
    assert other.get("/").status_code == 200
    auth.logout()
    assert client.get("/").status_code == 302
    assert other.get("/").status_code == 200  # the other browser stays signed in


def test_password_change_ends_other_sessions_but_keeps_this_one(app, client, auth, session, world):
    other = new_client(app)
    Auth(other).login("priya@example.com")
    auth.login("priya@example.com")
    response = client.post("/settings", data={
        "current_password": PASSWORD, "new_password": "a-new-password-1", "confirm": "a-new-password-1",
        "change_password": "Change password", "csrf_token": token(client, "/settings")})
    assert response.status_code == 302
    assert "Password changed" in text(client.get("/settings"))
    assert client.get("/").status_code == 200
    assert other.get("/").status_code == 302
    session.expire_all()
    assert session.get(User, world.priya.id).check_password("a-new-password-1")


def test_password_change_with_wrong_current_password_changes_nothing(client, auth, session, world):
    auth.login("priya@example.com")
    response = client.post("/settings", data={
        "current_password": "wrong-one-here", "new_password": "a-new-password-1", "confirm": "a-new-password-1",
        "change_password": "Change password", "csrf_token": token(client, "/settings")})
    assert response.status_code == 422 and "Not correct" in text(response)
    session.expire_all()
    assert session.get(User, world.priya.id).check_password(PASSWORD)
    assert client.get("/").status_code == 200


def test_time_zone_setting_is_used_for_every_time_shown(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    session.commit()
    auth.login("priya@example.com")
    response = client.post("/settings", data={"timezone": "Asia/Tokyo", "save_timezone": "Save",
                                              "csrf_token": token(client, "/settings")})
    assert response.status_code == 302
    page = text(client.get(f"/items/{item.ref}"))
    assert "JST" in page and "Times shown in Asia/Tokyo" in page
    bad = client.post("/settings", data={"timezone": "Mars/Olympus", "save_timezone": "Save",
                                         "csrf_token": token(client, "/settings")})
    assert bad.status_code == 422
    session.expire_all()
    assert session.get(User, world.priya.id).timezone == "Asia/Tokyo"


def test_time_zone_is_typed_with_suggestions_and_checked_on_the_server(client, auth, session, world):
    auth.login("priya@example.com")
    page = text(client.get("/settings"))
    assert re.search(r'<input[^>]*id="timezone"[^>]*list="timezone-names"', page) or \
        re.search(r'<input[^>]*list="timezone-names"[^>]*id="timezone"', page)
    assert '<datalist id="timezone-names">' in page and '<option value="America/New_York">' in page
    assert "<select" not in page.split('id="tz-heading"')[1].split("</section>")[0]
    response = client.post("/settings", data={"timezone": " america/new york ", "save_timezone": "Save",
                                              "csrf_token": token(client, "/settings")})
    assert response.status_code == 302
    session.expire_all()
    assert session.get(User, world.priya.id).timezone == "America/New_York"
    for bad in ("Mars/Olympus", "../../etc/passwd", "x" * 500, "", "Europe/\x00Berlin"):
        response = client.post("/settings", data={"timezone": bad, "save_timezone": "Save",
                                                  "csrf_token": token(client, "/settings")})
        assert response.status_code == 422, bad
    session.expire_all()
    assert session.get(User, world.priya.id).timezone == "America/New_York"


def test_post_without_csrf_token_is_refused_and_changes_nothing(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    session.commit()
    auth.login("priya@example.com")
    response = client.post(f"/items/{item.ref}/notes", data={"note": "sneaky"})
    assert response.status_code == 400 and "refused" in text(response)
    response = client.post(f"/items/{item.ref}/status", data={"status": "open", "version": item.version})
    assert response.status_code == 400
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200  # still signed in
    assert reload(session, item).status == "new"
    assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0


# --- the executive's queue ------------------------------------------------------------------------------------

def test_my_queue_shows_only_my_open_items_most_urgent_first(client, auth, session, world, make_item):
    now = utcnow()
    later = make_item(team=world.returns, assignee=world.priya, subject="Later", now=now - timedelta(minutes=10))
    soonest = make_item(team=world.returns, assignee=world.priya, subject="Soonest", now=now - timedelta(hours=3))
    middle = make_item(team=world.returns, assignee=world.priya, subject="Middle", now=now - timedelta(hours=1))
    paused = make_item(team=world.returns, assignee=world.priya, subject="Paused", now=now - timedelta(hours=5))
    lifecycle.change_status(session, paused, "pending_customer", actor=world.priya)
    done = make_item(team=world.returns, assignee=world.priya, subject="Done already")
    lifecycle.change_status(session, done, "resolved", actor=world.priya)
    toms = make_item(team=world.returns, assignee=world.tom, subject="Tom's item")
    session.commit()

    auth.login("priya@example.com")
    page = text(client.get("/"))
    assert refs_in(page, "my-queue") == [soonest.ref, middle.ref, later.ref, paused.ref]
    assert toms.ref not in page and done.ref not in page
    assert "customer@example.com" in page and "Pending customer" in page


def test_my_queue_pages_by_keyset(client, auth, session, world, make_item):
    now = utcnow()
    items = [make_item(team=world.returns, assignee=world.priya, type="general", now=now - timedelta(minutes=i))
             for i in range(53)]
    session.commit()
    auth.login("priya@example.com")
    first = text(client.get("/"))
    shown = refs_in(first, "my-queue")
    assert len(shown) == 50 and shown[0] == items[-1].ref
    next_link = re.search(r'href="(/\?after=[^"]+)"', first).group(1).replace("&amp;", "&")
    second = refs_in(text(client.get(next_link)), "my-queue")
    assert len(second) == 3 and not set(second) & set(shown)
    assert set(shown + second) == {i.ref for i in items}


def test_team_queue_and_take(client, auth, session, world, make_item):
    mine = make_item(team=world.returns, subject="Unassigned return")
    other_team = make_item(team=world.docs, type="document_verification", subject="Passport check")
    session.commit()
    auth.login("priya@example.com")
    page = text(client.get("/"))
    assert refs_in(page, "team-queue") == [mine.ref]
    assert other_team.ref not in page

    response = client.post(f"/items/{mine.ref}/take", data={"version": mine.version, "csrf_token": token(client)})
    assert response.status_code == 302
    assert reload(session, mine).assignee_id == world.priya.id
    page = text(client.get("/"))
    assert refs_in(page, "my-queue") == [mine.ref] and refs_in(page, "team-queue") == []


def test_taking_an_item_someone_else_took_explains_it(client, auth, session, world, make_item):
    item = make_item(team=world.returns)
    session.commit()
    auth.login("priya@example.com")
    csrf, version = token(client), item.version
    state.assign(session, item, world.tom, actor=world.tom)
    session.commit()
    client.post(f"/items/{item.ref}/take", data={"version": version, "csrf_token": csrf})
    assert "already taken by Tom Becker" in text(client.get("/"))
    assert reload(session, item).assignee_id == world.tom.id


# --- the item page ----------------------------------------------------------------------------------------------

def test_item_page_shows_fields_sla_checks_thread_and_history(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya, subject="Broken kettle")
    session.add(Message(work_item_id=item.id, kind="inbound", from_address="customer@example.com",
                        subject="Broken kettle", body_text="It arrived <broken>.", message_id="<a@example.com>"))
    lifecycle.add_note(session, item, actor=world.tom, body="Called the warehouse.")
    runner.run_check(session, item.id, "required_fields")
    session.commit()

    auth.login("priya@example.com")
    response = client.get(f"/items/{item.ref}")
    page = text(response)
    assert response.status_code == 200
    assert "Broken kettle" in page and "ORD-1001" in page and "49.90" in page and "Wrong size" in page
    assert "Email in" in page and "It arrived &lt;broken&gt;." in page
    assert "Internal note" in page and "Called the warehouse." in page and "Tom Becker" in page
    assert "First response due" in page and "On track" in page
    assert "Required fields" in page and "passed" in page
    history = re.search(r'<ol class="history" id="history">.*?</ol>', page, re.S).group(0)
    for kind in ("Created", "SLA set", "Note added", "Checks run"):
        assert kind in history
    buttons = re.findall(r'name="status" value="([a-z_]+)"', page)
    assert buttons == state.allowed_transitions(item)
    assert 'name="reply"' in page  # the assignee may reply: the item has a requester email


def test_note_and_status_change_through_the_forms(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    session.commit()
    auth.login("priya@example.com")
    csrf = token(client, f"/items/{item.ref}")
    response = client.post(f"/items/{item.ref}/notes", data={"note": "Waiting for the courier.", "csrf_token": csrf})
    assert response.status_code == 302 and response.headers["Location"] == f"/items/{item.ref}"
    page = text(client.get(f"/items/{item.ref}"))
    assert "Note added." in page and "Waiting for the courier." in page

    version = reload(session, item).version
    response = client.post(f"/items/{item.ref}/status", data={"status": "open", "version": version,
                                                                "comment": "", "csrf_token": csrf})
    assert response.status_code == 302
    page = text(client.get(f"/items/{item.ref}"))
    assert f"{item.ref} is now open." in page
    item = reload(session, item)
    assert item.status == "open"
    assert events_of(session, item)[-2:] == ["note_added", "status_changed"]


def test_illegal_status_change_shows_a_message_and_changes_nothing(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    lifecycle.change_status(session, item, "open", actor=world.priya)
    session.commit()
    version = item.version
    auth.login("priya@example.com")
    response = client.post(f"/items/{item.ref}/status", data={"status": "closed", "version": version,
                                                                "csrf_token": token(client)})
    assert response.status_code == 302
    page = text(client.get(f"/items/{item.ref}"))
    assert "Cannot change" in page and "from open to closed" in page
    item = reload(session, item)
    assert (item.status, item.version) == ("open", version)


def test_stale_status_change_says_the_item_changed_and_changes_nothing(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    session.commit()
    auth.login("priya@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    seen_version = int(re.search(r'name="version" value="(\d+)"', page).group(1))
    lifecycle.add_note(session, item, actor=world.sup, body="Meanwhile...")  # someone else changes it
    session.commit()
    response = client.post(f"/items/{item.ref}/status", data={"status": "open", "version": seen_version,
                                                                "csrf_token": csrf_token_from(page)})
    assert response.status_code == 302
    page = text(client.get(f"/items/{item.ref}"))
    assert "was changed by someone else" in page and "reload" in page
    assert reload(session, item).status == "new"


def test_executive_cannot_work_a_colleagues_item(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.tom)
    session.commit()
    auth.login("priya@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    assert 'name="status"' not in page and 'name="reply"' not in page
    assert 'name="note"' in page  # notes are open to anyone who can see the item
    response = client.post(f"/items/{item.ref}/status", data={"status": "open", "version": item.version,
                                                                "csrf_token": csrf_token_from(page)})
    assert response.status_code == 302
    assert "Only the assignee or a supervisor" in text(client.get(f"/items/{item.ref}"))
    assert reload(session, item).status == "new"


def test_another_teams_item_is_not_found(client, auth, session, world, make_item):
    item = make_item(team=world.docs, type="document_verification")
    session.commit()
    auth.login("priya@example.com")
    response = client.get(f"/items/{item.ref}")
    assert response.status_code == 404 and "We could not find that" in text(response)
    assert "Priya Nair" in text(response)  # the error page keeps the layout
    response = client.post(f"/items/{item.ref}/notes", data={"note": "probe", "csrf_token": token(client)})
    assert response.status_code == 404
    assert client.get("/items/BO-999999").status_code == 404
    assert client.get("/items/not-a-ref").status_code == 404
    assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0


def test_error_pages_render_without_a_user(app, client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    page = text(response)
    assert "We could not find that" in page and "Log out" not in page
    for template in ("403", "404", "500", "generic"):
        with app.test_request_context("/"):
            html = render_template(f"errors/{template}.html", status=418, message="Teapot trouble", fields={})
        assert "Teapot trouble" in html and "backdesk.css" in html


def test_reply_is_recorded_and_queued_for_sending(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    session.commit()
    auth.login("priya@example.com")
    response = client.post(f"/items/{item.ref}/replies", data={"reply": "We have refunded you.",
                                                                 "csrf_token": token(client)})
    assert response.status_code == 302
    page = text(client.get(f"/items/{item.ref}"))
    assert "Reply queued for customer@example.com" in page and "Reply out" in page
    assert session.scalar(sa.select(OutboxJob).where(OutboxJob.job_path == "workers.mail_out.send_message"))


def test_empty_note_is_refused_with_a_message(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    session.commit()
    auth.login("priya@example.com")
    client.post(f"/items/{item.ref}/notes", data={"note": "  ", "csrf_token": token(client)})
    assert "Write the note first." in text(client.get(f"/items/{item.ref}"))
    assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0


def test_resolution_above_threshold_needs_a_supervisors_approval(client, auth, app, session, make_team, make_user,
                                                                  make_item):
    team = make_team(name="Refunds", work_types=["return"], approval_threshold=10)
    make_user(email="sup@example.com", role="supervisor", teams=[team])
    exec_ = make_user(email="exec@example.com", teams=[team])
    item = make_item(team=team, assignee=exec_)
    lifecycle.change_status(session, item, "open", actor=exec_)
    session.commit()
    auth.login("exec@example.com")
    client.post(f"/items/{item.ref}/status", data={"status": "resolved", "version": item.version,
                                                     "csrf_token": token(client)})
    page = text(client.get(f"/items/{item.ref}"))
    assert "a supervisor must approve the resolution" in page and "is now resolved" not in page
    assert "Approval needed" in page and 'value="approve"' not in page
    assert reload(session, item).status == "awaiting_approval"

    sup_client = new_client(app)
    Auth(sup_client).login("sup@example.com")
    page = text(sup_client.get(f"/items/{item.ref}"))
    assert 'value="approve"' in page
    sup_client.post(f"/items/{item.ref}/approval", data={"decision": "approve", "comment": "ok",
                                                          "csrf_token": csrf_token_from(page)})
    assert reload(session, item).status == "resolved"
    assert session.scalar(sa.select(Approval)).status == "approved"


# --- supervisor -------------------------------------------------------------------------------------------------

def test_executive_gets_403_on_supervisor_page(client, auth, world):
    auth.login("priya@example.com")
    response = client.get("/supervisor")
    assert response.status_code == 403 and "not allowed" in text(response)
    assert 'href="/supervisor"' not in text(client.get("/"))


def test_supervisor_assigns_and_the_executive_sees_it(app, client, auth, session, world, make_item):
    now = utcnow()
    later = make_item(team=world.returns, subject="Later one", now=now)
    sooner = make_item(team=world.returns, subject="Sooner one", now=now - timedelta(hours=2))
    make_item(team=world.returns, assignee=world.tom)
    foreign = make_item(team=world.docs, type="document_verification")
    session.commit()

    auth.login("sam@example.com")
    page = text(client.get("/supervisor"))
    assert refs_in(page, "unassigned") == [sooner.ref, later.ref]
    assert foreign.ref not in page
    assert re.search(r'data-user="tom@example.com".*?class="num open-count">1<', page, re.S)
    assert "Lena Vogel" not in page  # not in a team Sam manages

    response = client.post(f"/supervisor/items/{sooner.ref}/assign", data={
        "assignee_id": world.priya.id, "version": sooner.version, "csrf_token": csrf_token_from(page)})
    assert response.status_code == 302 and response.headers["Location"] == "/supervisor"
    page = text(client.get("/supervisor"))
    assert f"{sooner.ref} assigned to Priya Nair." in page
    assert refs_in(page, "unassigned") == [later.ref]

    exec_client = new_client(app)
    Auth(exec_client).login("priya@example.com")
    assert refs_in(text(exec_client.get("/")), "my-queue") == [sooner.ref]


def test_supervisor_cannot_assign_outside_the_team(client, auth, session, world, make_item):
    item = make_item(team=world.returns)
    session.commit()
    auth.login("sam@example.com")
    client.post(f"/supervisor/items/{item.ref}/assign", data={
        "assignee_id": world.lena.id, "version": item.version, "csrf_token": token(client, "/supervisor")})
    assert "is not a member of Returns" in text(client.get("/supervisor"))
    assert reload(session, item).assignee_id is None


def test_supervisor_reassigns_from_the_item_page(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.tom)
    session.commit()
    auth.login("sam@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    response = client.post(f"/supervisor/items/{item.ref}/assign", data={
        "assignee_id": world.priya.id, "version": item.version, "next": f"/items/{item.ref}",
        "csrf_token": csrf_token_from(page)})
    assert response.headers["Location"] == f"/items/{item.ref}"
    assert reload(session, item).assignee_id == world.priya.id


# --- intake -----------------------------------------------------------------------------------------------------

def intake_data(client, **overrides):
    data = {"type": "return", "priority": "", "subject": "Customer wants a refund", "description": "Too small.",
            "requester_email": "anna@example.com", "requester_name": "Anna K",
            "return-order_number": "ORD-555", "return-purchase_date": "2026-10-01", "return-amount": "19.99",
            "return-currency": "eur", "return-reason": "Wrong size",
            "discrepancy_fix-currency": "USD",  # another type's input: ignored
            "csrf_token": token(client, "/submit")}
    data.update(overrides)
    return data


def test_intake_form_creates_an_item_and_shows_its_reference(client, auth, session, world):
    front = world.lena  # any signed-in person can file work, for any team
    auth.login(front.email)
    page = text(client.get("/submit"))
    for name in ("return-order_number", "document_verification-document_type", "discrepancy_fix-account"):
        assert f'name="{name}"' in page and f'for="{name}"' in page
    response = client.post("/submit", data=intake_data(client))
    assert response.status_code == 302
    item = session.scalar(sa.select(WorkItem))
    assert response.headers["Location"] == f"/submit/{item.ref}"
    page = text(client.get(response.headers["Location"]))
    assert item.ref in page and re.fullmatch(r"BO-\d{6}", item.ref)
    assert (item.source, item.team_id, item.created_by_id) == ("form", world.returns.id, front.id)
    assert (item.order_number, str(item.amount), item.currency) == ("ORD-555", "19.99", "EUR")
    assert item.requester_email == "anna@example.com" and item.requester_name == "Anna K"
    assert f'href="/items/{item.ref}"' not in page  # Lena cannot open a Returns item


def test_intake_form_shows_type_field_errors_next_to_their_inputs(client, auth, session, world):
    auth.login("priya@example.com")
    response = client.post("/submit", data=intake_data(client, **{"return-order_number": "",
                                                                   "return-amount": "12.345"}))
    assert response.status_code == 422
    page = text(response)
    assert re.search(r'id="return-order_number-error">Is required<', page)
    assert re.search(r'id="return-amount-error">Amount must have at most 2 decimal places<', page)
    assert 'value="Customer wants a refund"' in page  # what was typed is kept
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == 0


def test_intake_form_checks_the_basics(client, auth, session, world):
    auth.login("priya@example.com")
    response = client.post("/submit", data=intake_data(client, subject="", requester_email="not-an-email",
                                                       type=""))
    assert response.status_code == 422
    page = text(response)
    assert "A subject is required." in page and "Enter a valid email address." in page
    assert "Choose the type of request." in page
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == 0


def test_intake_confirmation_only_for_what_this_browser_filed(client, auth, world, make_item, session):
    item = make_item(team=world.returns)
    session.commit()
    auth.login("priya@example.com")
    response = client.get(f"/submit/{item.ref}")
    assert response.status_code == 302 and response.headers["Location"] == "/submit"
