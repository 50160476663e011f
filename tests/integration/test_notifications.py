"""Notifications people control: each kind reaches a person as they chose (email now, a daily digest,
the app only, or off), the bell counts the unread ones, and a digest mails each waiting one once."""
import email
import email.policy
from datetime import timedelta

import pytest
import sqlalchemy as sa

from queue_app.models import Notification, OutboxJob
from queue_app.models.base import utcnow
from queue_app.services.assignment import manual
from queue_app.services.errors import Invalid
from queue_app.services.intake import filing, mailboxes
from queue_app.services.people import notifications
from tests.conftest import csrf_token_from
from tests.integration.test_intake import mail


@pytest.fixture
def world(session, make_team, make_user, make_item):
    team = make_team(name="Returns", work_types=["return", "general"])
    sam = make_user(email="sam@example.com", name="Sam", role="supervisor", teams=[team])
    ana = make_user(email="ana@example.com", name="Ana", teams=[team])
    item = make_item(team=team, type="general")
    session.commit()
    return type("World", (), dict(team=team, sam=sam, ana=ana, item=item))


def rows(session, user=None):
    session.expire_all()
    query = sa.select(Notification).order_by(Notification.id)
    if user is not None:
        query = query.where(Notification.user_id == user.id)
    return session.scalars(query).all()


def mail_jobs(session):
    return session.scalars(sa.select(OutboxJob.args).where(OutboxJob.job_path == notifications.SEND_JOB)).all()


@pytest.mark.parametrize("channel, status, mailed", [("email", "queued", True), ("digest", "digest", False),
                                                     ("in_app", "in_app", False)])
def test_each_kind_reaches_a_person_as_they_chose(session, world, channel, status, mailed):
    notifications.set_preferences(session, world.ana, {"assigned": channel})
    manual.assign(session, world.item, world.ana, actor=world.sam)
    session.commit()

    [note] = rows(session, world.ana)
    assert (note.kind, note.send_status) == ("assigned", status)
    assert (mail_jobs(session) == [[note.id]]) is mailed
    assert notifications.unread_count(session, world.ana) == 1


def test_a_kind_turned_off_writes_nothing_and_names_no_one(session, world):
    notifications.set_preferences(session, world.ana, {"sla": "off"})
    told = notifications.notify(session, world.item, [world.ana, world.sam], "Due soon", "...", utcnow(), kind="sla")
    session.commit()
    assert told == ["sam@example.com"]
    assert rows(session, world.ana) == [] and len(rows(session, world.sam)) == 1


def test_preferences_are_checked_and_keep_what_is_not_given(session, world):
    with pytest.raises(Invalid) as refused:
        notifications.set_preferences(session, world.ana, {"assigned": "pigeon", "weather": "email"})
    assert refused.value.fields == {"assigned": "must be one of email, digest, in_app, off", "weather": "unknown kind"}
    notifications.set_preferences(session, world.ana, {"reply": "email"})
    notifications.set_preferences(session, world.ana, {"sla": "digest"})
    assert notifications.preferences_of(world.ana) == {"assigned": "email", "sla": "digest", "approval": "email",
                                                       "reply": "email", "other": "in_app"}


def test_the_customers_reply_tells_the_assignee(session, world):
    mailboxes.create_mailbox(session, address="returns@shop.example.com", type="general", team_name="Returns")
    manual.assign(session, world.item, world.ana, actor=world.sam)
    session.commit()
    raw = mail(f"Re: [{world.item.ref}] {world.item.subject}", sender="Customer <customer@example.com>",
               to="returns@shop.example.com", body="Here are the photos.\n")
    filing.process(session, filing.receive(session, raw, source="smtp"))
    session.commit()
    reply = [n for n in rows(session, world.ana) if n.kind == "reply"]
    assert [(n.send_status, n.subject) for n in reply] == [("in_app", f"[{world.item.ref}] customer@example.com replied")]
    assert "Here are the photos." in reply[0].body


def test_the_daily_digest_mails_each_waiting_notification_once(app, session, world, tmp_path, monkeypatch):
    from workers.mail_out import send_digest

    monkeypatch.setitem(app.config, "INSTANCE_DIR", str(tmp_path))
    monkeypatch.setitem(app.config, "SMTP_HOST", None)
    notifications.set_preferences(session, world.ana, {"other": "digest"})
    day_ago = utcnow() - timedelta(hours=25)
    for subject, at in (("First", day_ago), ("Second", utcnow())):
        notifications.notify(session, world.item, [world.ana], subject, "...", at, kind="other")
    session.commit()
    assert notifications.enqueue_digests(session, now=day_ago + timedelta(hours=23)) == 0  # not a day old yet
    assert notifications.enqueue_digests(session) == 1
    session.commit()
    [job] = session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == notifications.DIGEST_JOB)).all()
    ana_id, ref = world.ana.id, world.item.ref
    assert job.args == [ana_id]

    assert send_digest(ana_id) == "sent"
    assert send_digest(ana_id) == "skipped"  # a second run finds nothing waiting
    [eml] = (tmp_path / "outbox").glob("digest-*.eml")
    sent = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert sent["To"] == "ana@example.com" and sent["Subject"] == "Your Backdesk digest: 2 notifications"
    body = sent.get_content()
    assert "First" in body and "Second" in body and f"/items/{ref}" in body
    assert {n.send_status for n in session.scalars(sa.select(Notification))} == {"sent"}


def test_the_bell_the_list_and_marking_read(session, world, client, auth, make_user):
    for subject in ("One", "Two", "Three"):
        notifications.notify(session, world.item, [world.ana], subject, "...", utcnow(), kind="other")
    notifications.notify(session, world.item, [world.sam], "Not yours", "...", utcnow(), kind="other")
    session.commit()
    theirs = rows(session, world.sam)[0].id

    auth.login("ana@example.com")
    page = client.get("/").get_data(as_text=True)
    assert 'class="bell-count">3<' in page and "3 unread" in page
    listed = client.get("/notifications").get_data(as_text=True)
    assert listed.index("Three") < listed.index("Two") < listed.index("One") and "Not yours" not in listed
    token = csrf_token_from(listed)
    first = rows(session, world.ana)[0].id
    client.post("/notifications/read", data={"csrf_token": token, "id": [str(first), str(theirs)]})
    assert notifications.unread_count(session, world.ana) == 2
    assert notifications.unread_count(session, world.sam) == 1  # someone else's id changes nothing
    assert client.post("/notifications/read", data={"id": str(first)}).status_code == 400  # no CSRF token
    client.post("/notifications/read", data={"csrf_token": token})
    assert notifications.unread_count(session, world.ana) == 0
    assert "bell-count" not in client.get("/").get_data(as_text=True)


def test_the_settings_page_saves_the_choices(session, world, client, auth):
    auth.login("ana@example.com")
    page = client.get("/settings").get_data(as_text=True)
    assert 'id="kind-assigned"' in page
    response = client.post("/settings/notifications", follow_redirects=True, data={
        "csrf_token": csrf_token_from(page), "kind-assigned": "in_app", "kind-sla": "off"})
    assert "Notification settings saved." in response.get_data(as_text=True)
    session.expire_all()
    assert notifications.preferences_of(world.ana)["assigned"] == "in_app"
    assert notifications.preferences_of(world.ana)["sla"] == "off"
    response = client.post("/settings/notifications", follow_redirects=True, data={
        "csrf_token": csrf_token_from(page), "kind-assigned": "carrier-pigeon"})
    assert "were not saved" in response.get_data(as_text=True)
