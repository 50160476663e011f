"""The admin pages for the email quarantine and the mailboxes, through the test client."""
import re
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from queue_app.models import Event, InboundEmail, Mailbox, Message, OutboxJob, Team, WorkItem
from queue_app.models.base import utcnow
from queue_app.services.intake import filing
from queue_app.services.intake import mailboxes as intake_mailboxes
from tests.conftest import Auth, csrf_token_from

DESK = "returns@desk.example.com"


def text(response):
    return response.get_data(as_text=True)


def token(client, url="/"):
    return csrf_token_from(text(client.get(url)))


def email_bytes(subject="Parcel arrived broken", sender="carla@customer.example.com", to=DESK, message_id=None):
    message_id = message_id or f"<{abs(hash((subject, sender)))}@customer.example.com>"
    return (f"From: Carla Diaz <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n"
            "Date: Mon, 23 Nov 2026 09:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "The parcel arrived broken. Order ORD-1001.\r\n").encode()


def quarantined(session, raw, *, envelope_to=(DESK,), now=None):
    """Receive and process a message that ends in quarantine (committed, as the intake would)."""
    inbound = filing.receive(session, raw, source="file", envelope_to=list(envelope_to), now=now)
    outcome = filing.process(session, inbound, now=now)
    session.commit()
    assert outcome.status == "quarantined", outcome
    return inbound


def reload(session, inbound):
    session.expire_all()
    return session.get(InboundEmail, inbound.id)


@pytest.fixture
def world(session, make_team, make_user):
    returns = make_team(name="Returns", work_types=["return"])
    admin = make_user(email="ada@example.com", name="Ada Admin", role="admin")
    sup = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[returns])
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    session.commit()
    return type("World", (), dict(returns=returns, admin=admin, sup=sup, priya=priya))


@pytest.fixture
def admin_client(client, auth, world):
    auth.login("ada@example.com")
    return client


# --- access ------------------------------------------------------------------------------------------------

def test_only_admins_get_in(app, client, session, world):
    inbound = quarantined(session, email_bytes())
    box = intake_mailboxes.create_mailbox(session, address="docs@desk.example.com", type="general", team_name="Returns")
    session.commit()
    pages = ["/admin/", "/admin/quarantine", f"/admin/quarantine/{inbound.id}", f"/admin/quarantine/{inbound.id}/raw",
             "/admin/mailboxes", f"/admin/mailboxes/{box.id}"]
    posts = [f"/admin/quarantine/{inbound.id}/retry", f"/admin/quarantine/{inbound.id}/release",
             f"/admin/quarantine/{inbound.id}/discard", "/admin/mailboxes", f"/admin/mailboxes/{box.id}"]

    for url in pages:  # signed out: to the login page
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), url

    for email in ("priya@example.com", "sam@example.com"):
        other = app.test_client()
        Auth(other).login(email)
        csrf = token(other)
        for url in pages:
            assert other.get(url).status_code == 403, (email, url)
        for url in posts:
            response = other.post(url, data={"csrf_token": csrf, "mailbox_id": box.id, "address": "x@desk.example.com",
                                             "type": "general", "team": "Returns", "priority": "normal"})
            assert response.status_code == 403, (email, url)
        assert 'href="/admin/"' not in text(other.get("/"))  # no Admin link in the nav

    inbound = reload(session, inbound)
    assert inbound.status == "quarantined" and inbound.attempts == 1
    assert session.scalar(sa.select(sa.func.count()).select_from(Mailbox)) == 1


def test_admin_sees_the_admin_link_and_the_quarantine_count(admin_client, session):
    quarantined(session, email_bytes(subject="one"))
    quarantined(session, email_bytes(subject="two"))
    home = text(admin_client.get("/"))
    assert re.search(r'<a href="/admin/"[^>]*>Admin</a>', home)
    page = text(admin_client.get("/admin/mailboxes"))
    count = re.search(r'id="quarantine-count">(.*?)</span></a>', page, re.S).group(1)
    assert re.sub(r"<[^>]+>|\(|waiting\)", "", count).strip() == "2"


def test_the_admin_landing_page_shows_what_needs_an_admin_with_links(admin_client, session, world, make_item):
    page = text(admin_client.get("/admin/"))
    assert page.count("class=\"overview-count\">0<") >= 3  # on a quiet desk
    quarantined(session, email_bytes(subject="one"))
    quarantined(session, email_bytes(subject="two"))
    item = make_item(team=session.get(Team, world.returns.id))
    item.sla_state = "breached"
    session.add(OutboxJob(job_path="workers.mail_out.send_message", args=[1], failed_at=utcnow(),
                          last_error="SMTP refused"))
    session.commit()

    response = admin_client.get("/admin/")
    assert response.status_code == 200  # a page of its own, not a redirect to the quarantine
    page = text(response)

    def count(card):
        block = re.search(rf'<li class="[^"]*" id="overview-{card}".*?</li>', page, re.S).group(0)
        return block, re.search(r'class="overview-count">([^<]+)<', block).group(1)

    block, n = count("quarantine")
    assert n == "2" and 'href="/admin/quarantine"' in block and "needs-you" in block
    block, n = count("approvals")
    assert n == "0" and 'href="/supervisor/approvals"' in block and "needs-you" not in block
    block, n = count("breached")
    assert n == "1" and "/supervisor/reports?report=breaches" in block
    block, n = count("jobs")
    assert n == "1" and "outbox status" in block
    block, n = count("audit")
    assert n == "0" and 'href="/admin/audit"' in block  # each commit seals what it wrote
    assert "Nothing needs you right now." not in page
    assert 'aria-current="page">Overview</a>' in page


# --- the quarantine list and detail ------------------------------------------------------------------------

def test_quarantine_lists_messages_with_reason_newest_first(admin_client, session, world):
    world.admin.timezone = "Asia/Tokyo"
    session.commit()
    old = quarantined(session, email_bytes(subject="Old one"), now=datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc))
    new = quarantined(session, b"Subject: no sender here\r\n\r\nbody",
                      now=datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc))
    page = text(admin_client.get("/admin/quarantine"))
    rows = re.findall(r'<tr data-inbound="(\d+)"', page)
    assert rows == [str(new.id), str(old.id)]
    assert "Old one" in page and "Carla Diaz &lt;carla@customer.example.com&gt;" in page
    assert "no_mailbox" in page and filing.QUARANTINE_REASONS["no_mailbox"] in page
    assert f"Addressed to {DESK}" in page  # the detail
    assert "no_sender" in page and filing.QUARANTINE_REASONS["no_sender"] in page
    assert "2026-11-23 19:00 JST" in page  # received time in the viewer's zone
    assert DESK in page and "file" in page


def test_garbage_never_breaks_the_pages(admin_client, session):
    garbage = [
        b"\x00\xff\xfe\x80 not an email at all \xc3\x28\r\n\r\n\xff",
        (b"Subject: =?utf-8?b?!!!broken?=\xff\xfe\r\nFrom: =?bogus-charset?q?=ZZ?= <@@>\r\n"
         b"To: \x01\x02\x7f\r\nDate: yesterday-ish\r\n\r\nbody"),
        b"From: " + b"a" * 70000 + b"\r\n\r\n",
        b"\r\n\r\n",
        b"Subject: \xed\xa0\x80 lone surrogate\r\n\r\nx",
    ]
    ids = []
    for raw in garbage:
        inbound = filing.receive(session, raw, source="smtp", envelope_to=["x@nowhere.example.com"])
        filing.quarantine(inbound, "unparseable", inbound.received_at)
        ids.append(inbound.id)
    session.commit()
    response = admin_client.get("/admin/quarantine")
    assert response.status_code == 200
    assert len(re.findall(r'<tr data-inbound="', text(response))) == len(garbage)
    for inbound_id in ids:
        assert admin_client.get(f"/admin/quarantine/{inbound_id}").status_code == 200


def test_detail_shows_headers_and_the_raw_download(admin_client, session):
    raw = email_bytes(subject="Where is my refund?")
    inbound = quarantined(session, raw)
    page = text(admin_client.get(f"/admin/quarantine/{inbound.id}"))
    assert "Where is my refund?" in page and "Message-ID" in page and "Carla Diaz" in page
    assert f'href="/admin/quarantine/{inbound.id}/raw"' in page

    response = admin_client.get(f"/admin/quarantine/{inbound.id}/raw")
    assert response.status_code == 200
    assert response.data == raw
    assert response.headers["Content-Type"] == "message/rfc822"
    assert response.headers["Content-Disposition"] == f'attachment; filename="inbound-{inbound.id}.eml"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert admin_client.get("/admin/quarantine/999999").status_code == 404
    assert admin_client.get("/admin/quarantine/999999/raw").status_code == 404


def test_paging_walks_from_newest_to_oldest(admin_client, session, monkeypatch):
    monkeypatch.setattr("queue_app.admin.views.PAGE_SIZE", 2)
    start = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
    made = [quarantined(session, email_bytes(subject=f"Mail {n}"), now=start + timedelta(hours=n)) for n in range(3)]
    first = text(admin_client.get("/admin/quarantine"))
    assert re.findall(r'<tr data-inbound="(\d+)"', first) == [str(made[2].id), str(made[1].id)]
    older = re.search(r'href="(/admin/quarantine\?after=[^"]+)"', first).group(1).replace("&amp;", "&")
    second = text(admin_client.get(older))
    assert re.findall(r'<tr data-inbound="(\d+)"', second) == [str(made[0].id)]
    assert "Older" not in second
    assert admin_client.get("/admin/quarantine?after=garbage").status_code == 200


# --- actions -------------------------------------------------------------------------------------------------

def test_retry_files_it_once_the_mailbox_exists(admin_client, session, world):
    inbound = quarantined(session, email_bytes())
    url = f"/admin/quarantine/{inbound.id}"

    response = admin_client.post(f"{url}/retry", data={"csrf_token": token(admin_client, url)}, follow_redirects=True)
    assert "Still quarantined: " + filing.QUARANTINE_REASONS["no_mailbox"] in text(response)
    inbound = reload(session, inbound)
    assert inbound.status == "quarantined" and inbound.attempts == 2

    admin_client.post("/admin/mailboxes", data={
        "csrf_token": token(admin_client, "/admin/mailboxes"), "address": DESK, "type": "return", "team": "Returns",
        "priority": "high", "imap_tls": "ssl"})
    response = admin_client.post(f"{url}/retry", data={"csrf_token": token(admin_client, url)}, follow_redirects=True)
    inbound = reload(session, inbound)
    assert inbound.status == "created" and inbound.work_item is not None
    item = inbound.work_item
    assert f"Filed as {item.ref}." in text(response)
    assert (item.team.name, item.type, item.priority, item.source) == ("Returns", "return", "high", "email")
    assert session.scalar(sa.select(Message).where(Message.work_item_id == item.id, Message.kind == "inbound"))
    event = session.scalar(sa.select(Event).where(Event.work_item_id == item.id,
                                                  Event.kind == "released_from_quarantine"))
    assert event.actor_label == "ada@example.com" and event.data["how"] == "retry"
    # No actions are offered any more, and a second retry is refused without an error page.
    assert 'id="retry"' not in text(admin_client.get(url))
    response = admin_client.post(f"{url}/retry", data={"csrf_token": token(admin_client, url)}, follow_redirects=True)
    assert response.status_code == 200 and "Only quarantined messages can be retried." in text(response)


def test_release_files_even_an_unparseable_message_into_the_chosen_mailbox(admin_client, session, world):
    inbound = quarantined(session, b"\x00\xff garbage without headers")
    assert inbound.reason == "unparseable"
    box = intake_mailboxes.create_mailbox(session, address="intake@desk.example.com", type="general", team_name="Returns")
    session.commit()
    url = f"/admin/quarantine/{inbound.id}"
    page = text(admin_client.get(url))
    assert f'<option value="{box.id}">intake@desk.example.com (Returns)</option>' in page

    response = admin_client.post(f"{url}/release", data={"csrf_token": csrf_token_from(page), "mailbox_id": "0"},
                                 follow_redirects=True)
    assert "Choose a mailbox." in text(response)
    assert reload(session, inbound).status == "quarantined"

    response = admin_client.post(f"{url}/release", data={"csrf_token": csrf_token_from(page), "mailbox_id": box.id},
                                 follow_redirects=True)
    inbound = reload(session, inbound)
    assert inbound.status == "created"
    item = inbound.work_item
    assert f"Filed as {item.ref}." in text(response)
    assert item.team.name == "Returns" and item.subject == "(unreadable email released from quarantine)"


def test_discard_keeps_the_row_and_its_bytes(admin_client, session, world):
    raw = email_bytes(subject="Spam, really")
    inbound = quarantined(session, raw)
    url = f"/admin/quarantine/{inbound.id}"
    response = admin_client.post(f"{url}/discard", data={"csrf_token": token(admin_client, url)},
                                 follow_redirects=True)
    assert f"Discarded message #{inbound.id}" in text(response)
    inbound = reload(session, inbound)
    assert inbound.status == "discarded" and inbound.raw == raw and inbound.reason == "no_mailbox"
    assert "ada@example.com" in inbound.detail
    assert f'data-inbound="{inbound.id}"' not in text(admin_client.get("/admin/quarantine"))
    assert admin_client.get(f"{url}/raw").data == raw  # still downloadable
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == 0


def test_posts_without_csrf_are_refused(admin_client, session, world):
    inbound = quarantined(session, email_bytes())
    for url in (f"/admin/quarantine/{inbound.id}/discard", f"/admin/quarantine/{inbound.id}/retry"):
        response = admin_client.post(url, data={})
        assert response.status_code == 400 and "The form was refused" in text(response)
    response = admin_client.post("/admin/mailboxes", data={"address": DESK, "type": "return", "team": "Returns",
                                                           "priority": "normal", "imap_tls": "ssl"})
    assert response.status_code == 400
    inbound = reload(session, inbound)
    assert inbound.status == "quarantined" and inbound.attempts == 1
    assert session.scalar(sa.select(sa.func.count()).select_from(Mailbox)) == 0


# --- mailboxes -----------------------------------------------------------------------------------------------

def field_error(html, field_id):
    match = re.search(rf'<p class="error" id="{field_id}-error">(.*?)</p>', html, re.S)
    return match.group(1) if match else None


def test_mailbox_create_shows_errors_next_to_fields_and_creates_nothing(admin_client, session, world):
    csrf = token(admin_client, "/admin/mailboxes")
    response = admin_client.post("/admin/mailboxes", data={
        "csrf_token": csrf, "address": "not an address", "type": "spaceship", "team": "Returns", "priority": "normal",
        "imap_tls": "ssl", "imap_port": "99999"})
    page = text(response)
    assert response.status_code == 422
    assert field_error(page, "address") and field_error(page, "type") and field_error(page, "imap_port")
    assert 'aria-invalid="true"' in page
    assert session.scalar(sa.select(sa.func.count()).select_from(Mailbox)) == 0

    response = admin_client.post("/admin/mailboxes", data={
        "csrf_token": csrf, "address": "Returns@Desk.Example.com", "type": "return", "team": "Returns",
        "priority": "urgent", "imap_host": "imap.desk.example.com", "imap_port": "993", "imap_tls": "ssl",
        "imap_user": "returns", "imap_password": "s3cret-imap-pass", "imap_folder": "",
        "imap_processed_folder": "Done"}, follow_redirects=True)
    page = text(response)
    assert "Mailbox returns@desk.example.com added for Returns." in page
    assert 'data-mailbox="returns@desk.example.com"' in page
    assert "s3cret-imap-pass" not in page
    box = intake_mailboxes.find_mailbox(session, DESK)
    assert (box.type, box.priority, box.imap_password, box.imap_folder, box.imap_processed_folder) == (
        "return", "urgent", "s3cret-imap-pass", "INBOX", "Done")

    response = admin_client.post("/admin/mailboxes", data={
        "csrf_token": csrf, "address": DESK, "type": "return", "team": "Returns", "priority": "normal",
        "imap_tls": "ssl"})
    assert response.status_code == 422 and field_error(text(response), "address") == "Already exists"
    assert session.scalar(sa.select(sa.func.count()).select_from(Mailbox)) == 1


def test_mailbox_edit_toggles_active_and_keeps_the_password_unless_changed(admin_client, session, world):
    session.add(Team(name="Escalations", work_types=["escalation"]))
    box = intake_mailboxes.create_mailbox(session, address=DESK, type="return", team_name="Returns",
                                   imap_host="imap.desk.example.com", imap_user="returns", imap_password="old-pass")
    box.imap_uidvalidity = 42
    session.commit()
    url = f"/admin/mailboxes/{box.id}"
    page = text(admin_client.get(url))
    assert "old-pass" not in page and "An IMAP password is stored" in page
    assert re.search(r'<input[^>]*checked[^>]*id="active"|<input[^>]*id="active"[^>]*checked', page)

    data = {"csrf_token": csrf_token_from(page), "type": "escalation", "team": "Escalations", "priority": "high",
            "imap_host": "imap.desk.example.com", "imap_tls": "starttls", "imap_port": "143", "imap_user": "returns",
            "imap_password": "", "imap_folder": "INBOX", "imap_processed_folder": ""}  # active unticked
    response = admin_client.post(url, data=data, follow_redirects=True)
    assert "(inactive)" in text(response)
    session.expire_all()
    box = session.get(Mailbox, box.id)
    assert (box.active, box.type, box.team.name, box.priority, box.imap_tls, box.imap_port) == (
        False, "escalation", "Escalations", "high", "starttls", 143)
    assert box.imap_password == "old-pass" and box.imap_uidvalidity == 42  # same account: nothing forgotten
    assert intake_mailboxes.mailbox_for(session, [DESK]) is None  # inactive mailboxes receive nothing

    data.update(active="y", imap_password="new-pass", imap_folder="Support")
    admin_client.post(url, data=data)
    session.expire_all()
    box = session.get(Mailbox, box.id)
    assert box.active and box.imap_password == "new-pass" and box.imap_folder == "Support"
    assert box.imap_uidvalidity is None  # another folder: its UIDs are not the old folder's

    data.update(imap_password="", clear_password="y")
    admin_client.post(url, data=data)
    session.expire_all()
    assert session.get(Mailbox, box.id).imap_password is None

    response = admin_client.post(url, data=dict(data, type="spaceship", priority="whenever"))
    assert response.status_code == 422
    assert field_error(text(response), "type") and field_error(text(response), "priority")
    assert admin_client.get("/admin/mailboxes/999999").status_code == 404
