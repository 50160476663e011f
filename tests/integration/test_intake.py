"""Email intake end to end: services.intake.receive + process against the test database.

Every message must end as a new item, a follow-up, a duplicate or a quarantined message
with its reason and raw bytes; acknowledgements go out (as .eml files, SMTP_HOST unset)
only when they should.
"""
import base64
import email
import email.policy
import re
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa

from queue_app.models import (
    Attachment,
    Blob,
    Event,
    InboundEmail,
    Message,
    OutboxJob,
    RoutingRule,
    WorkItem,
)
from queue_app.models.base import utcnow
from queue_app.services.intake import filing, mailboxes
from queue_app.services.intake import quarantine as intake_quarantine
from queue_app.services.items import lifecycle, state
from workers.mail_out import send_message

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
DESK = "desk@backdesk.example.com"  # the corpus files are addressed here
RETURNS = "returns@backdesk.example.com"
DOMAIN = "mail.backdesk.test"  # MAIL_DOMAIN in these tests: our outgoing Message-IDs end in it
SEND_JOB = "workers.mail_out.send_message"

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAIB4ic/"
                       "ngAAAABJRU5ErkJggg==")
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"


# --- helpers ------------------------------------------------------------------------------

_seq = iter(range(1, 10**9))


def new_id(domain="customer.example.com"):
    return f"<msg-{next(_seq)}@{domain}>"


def mail(subject="Broken kettle", *, sender="Anna K <anna@customer.example.com>", to=DESK, body=None,
         message_id="auto", html=None, attachments=(), **headers):
    """Bytes of a simple email; message_id="auto" makes a fresh one, None leaves it out."""
    msg = EmailMessage()
    if sender is not None:
        msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    if message_id == "auto":
        message_id = new_id()
    if message_id is not None:
        msg["Message-ID"] = message_id
    msg["Date"] = "Mon, 23 Nov 2026 09:00:00 +0000"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body if body is not None else "Hello, the kettle arrived broken. Please refund.\n")
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, data, ctype in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return bytes(msg)


def corpus(name):
    return (CORPUS / name).read_bytes()


def deliver(session, raw, *, envelope_to=(), now=None, **kw):
    inbound = filing.receive(session, raw, source="smtp", envelope_to=envelope_to, now=now)
    outcome = filing.process(session, inbound, now=now, **kw)
    session.commit()
    return outcome


def count(session, model, *where):
    return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def events(session, item, kind=None):
    query = sa.select(Event).where(Event.work_item_id == item.id)
    if kind is not None:
        query = query.where(Event.kind == kind)
    return session.scalars(query.order_by(Event.id)).all()


def messages(session, item, kind=None):
    query = sa.select(Message).where(Message.work_item_id == item.id)
    if kind is not None:
        query = query.where(Message.kind == kind)
    return session.scalars(query.order_by(Message.id)).all()


def send_jobs(session):
    return session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == SEND_JOB).order_by(OutboxJob.id)).all()


def sent_file(tmp_path, message_id):
    """Run the mail job (inside the app context) and read the .eml it wrote."""
    where = send_message(message_id)
    path = tmp_path / "outbox" / f"message-{message_id}.eml"
    assert where == str(path)
    raw = path.read_bytes()
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def nested_multipart(levels):
    text = "From: a@example.com\r\nTo: desk@backdesk.example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    for i in range(levels):
        text += f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'
    text += "Content-Type: text/plain\r\n\r\nhello\r\n"
    for i in reversed(range(levels)):
        text += f"--b{i}--\r\n"
    return text.encode()


def dsn(original_message_id, *, sender="MAILER-DAEMON@mx.example.net"):
    """A delivery status notification about one message, as MTAs write them."""
    return (
        f"From: Mail Delivery System <{sender}>\r\nTo: {DESK}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Auto-Submitted: auto-replied\r\nMessage-ID: {new_id('mx.example.net')}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r1"\r\n\r\n'
        "--r1\r\nContent-Type: text/plain\r\n\r\n"
        "<anna@customer.example.com>: host mx.customer.example.com said: 550 5.1.1 User unknown\r\n\r\n"
        "--r1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        "Final-Recipient: rfc822; anna@customer.example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "--r1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Backdesk <backdesk@localhost>\r\nTo: anna@customer.example.com\r\n"
        f"Subject: [BO-000001] Broken kettle\r\nMessage-ID: {original_message_id}\r\n\r\n"
        "--r1--\r\n"
    ).encode()


# --- fixtures -------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def mail_settings(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_DOMAIN", DOMAIN)
    monkeypatch.setitem(app.config, "MAIL_FROM", "backdesk@backdesk.example.com")
    monkeypatch.setitem(app.config, "INSTANCE_DIR", str(tmp_path))  # the mail job writes tmp_path/outbox
    monkeypatch.setitem(app.config, "SMTP_HOST", None)


@pytest.fixture
def world(session, make_team, make_user):
    support = make_team(name="Support", work_types=["general"])
    returns = make_team(name="Returns", work_types=["return"])
    desk = mailboxes.create_mailbox(session, address=DESK, type="general", team_name="Support", priority="normal")
    returns_box = mailboxes.create_mailbox(session, address=RETURNS, type="return", team_name="Returns",
                                           priority="high")
    supervisor = make_user(email="sam@backdesk.example.com", role="supervisor", teams=[support])
    executive = make_user(email="erin@backdesk.example.com", role="executive", teams=[support])
    session.commit()
    return type("World", (), {"support": support, "returns": returns, "desk": desk, "returns_box": returns_box,
                              "supervisor": supervisor, "executive": executive})


def new_item(session, **kw):
    """An item made from an email; returns (item, the customer's Message-ID, the acknowledgement)."""
    kw.setdefault("message_id", new_id())
    outcome = deliver(session, mail(**kw))
    assert outcome.status == "created", outcome
    [ack] = messages(session, outcome.item, "outbound")
    return outcome.item, kw["message_id"], ack


# --- new items ------------------------------------------------------------------------------

def test_a_mail_to_a_known_mailbox_becomes_an_item_with_an_acknowledgement(session, world, tmp_path):
    raw = mail("Refund for order ORD-1001", to=f"Returns Desk <{RETURNS}>", message_id="<order-1@customer.example.com>")

    outcome = deliver(session, raw)

    assert outcome.status == "created"
    item = outcome.item
    assert re.fullmatch(r"BO-\d{6}", item.ref)
    assert (item.type, item.team.name, item.priority, item.source) == ("return", "Returns", "high", "email")
    assert (item.requester_email, item.requester_name) == ("anna@customer.example.com", "Anna K")
    assert item.subject == "Refund for order ORD-1001" and "kettle arrived broken" in item.description
    assert item.first_response_due is not None and item.sla_state == "on_track"

    inbound = session.get(InboundEmail, outcome.inbound.id)
    assert inbound.raw == raw and inbound.size == len(raw)
    assert (inbound.status, inbound.work_item_id, inbound.mailbox_id) == ("created", item.id, world.returns_box.id)
    assert inbound.message_id == "<order-1@customer.example.com>"

    [received] = messages(session, item, "inbound")
    assert received.message_id == "<order-1@customer.example.com>" and received.inbound_email_id == inbound.id
    assert received.from_address == "anna@customer.example.com" and not received.flagged_for_review

    [ack] = messages(session, item, "outbound")
    assert ack.is_automatic and ack.send_status == "queued"
    assert ack.subject == f"[{item.ref}] Refund for order ORD-1001"
    assert re.search(r"\[BO-\d{6}\]", ack.subject)
    assert ack.in_reply_to == "<order-1@customer.example.com>"
    assert ack.to_addresses == "anna@customer.example.com"
    assert item.ref in ack.body_text and "Returns" in ack.body_text
    assert [job.args for job in send_jobs(session)] == [[ack.id]]
    kinds = [e.kind for e in events(session, item)]
    assert kinds[0] == "created" and {"sla_set", "email_received", "acknowledged"} <= set(kinds)
    assert "ack_suppressed" not in kinds

    ack_id, ref = ack.id, item.ref
    _, sent = sent_file(tmp_path, ack_id)

    assert sent["Message-ID"].endswith(f"@{DOMAIN}>")
    assert sent["Message-ID"] == session.get(Message, ack_id).message_id
    assert sent["In-Reply-To"] == "<order-1@customer.example.com>"
    assert sent["To"] == "anna@customer.example.com" and sent["Auto-Submitted"] == "auto-replied"
    assert sent["Subject"] == f"[{ref}] Refund for order ORD-1001"
    assert ref in sent.get_content()
    assert session.get(Message, ack_id).send_status == "sent"


def test_the_envelope_recipient_picks_the_mailbox_before_to_and_cc(session, world):
    outcome = deliver(session, mail(to="someone@else.example.com"), envelope_to=[RETURNS.upper()])

    assert outcome.status == "created" and outcome.item.team.name == "Returns"


def test_a_routing_rule_overrides_the_mailbox_defaults(session, world):
    session.add(RoutingRule(name="VIP refunds", position=10, source="email", recipient=DESK,
                            sender="@vip.example.com", subject_contains="refund", keywords=["order"],
                            set_type="return", set_team_id=world.returns.id, set_priority="urgent"))
    session.commit()

    matched = deliver(session, mail("Refund please", sender="Boss <boss@VIP.example.com>",
                                    body="About my order ORD-77."))
    other_sender = deliver(session, mail("Refund please", sender="joe@example.org", body="About my order."))
    no_keyword = deliver(session, mail("Refund please", sender="boss@vip.example.com", body="Nothing to add."))
    other_mailbox = deliver(session, mail("Refund please", sender="boss@vip.example.com", to=RETURNS,
                                          body="About my order."))

    item = matched.item
    assert (item.type, item.team.name, item.priority) == ("return", "Returns", "urgent")
    [routed] = events(session, item, "routed")
    assert routed.data == {"rule": "VIP refunds", "team": "Returns"}
    for outcome in (other_sender, no_keyword):
        assert (outcome.item.type, outcome.item.team.name, outcome.item.priority) == ("general", "Support", "normal")
        assert events(session, outcome.item, "routed") == []
    # Not the rule's recipient: the Returns mailbox's own defaults.
    assert (other_mailbox.item.type, other_mailbox.item.priority) == ("return", "high")


# --- threading ------------------------------------------------------------------------------

def test_a_reply_threads_by_in_reply_to(session, world):
    item, first_id, ack = new_item(session)

    outcome = deliver(session, mail("Re: something else entirely", in_reply_to=first_id))
    via_ack = deliver(session, mail("Re: your acknowledgement", in_reply_to=ack.message_id))

    assert (outcome.status, outcome.item.id) == ("followup", item.id)
    assert (via_ack.status, via_ack.item.id) == ("followup", item.id)
    assert count(session, WorkItem) == 1
    inbound = messages(session, item, "inbound")
    assert len(inbound) == 3 and not any(m.flagged_for_review for m in inbound)
    assert inbound[1].in_reply_to == first_id
    assert len(events(session, item, "email_received")) == 3
    assert len(messages(session, item, "outbound")) == 1  # follow-ups are not acknowledged


def test_a_reply_threads_by_references_alone(session, world):
    item, first_id, _ = new_item(session)

    outcome = deliver(session, mail("Another subject", references=f"<unknown-1@elsewhere.example> {first_id}"))

    assert (outcome.status, outcome.item.id) == ("followup", item.id)
    assert session.get(InboundEmail, outcome.inbound.id).work_item_id == item.id


def test_a_reply_threads_by_the_reference_tag_in_the_subject(session, world):
    item, _, _ = new_item(session)

    outcome = deliver(session, mail(f"RE: Re: [{item.ref}] Broken kettle"))
    lower = deliver(session, mail(f"Fwd: [{item.ref.lower()}] more photos"))
    unknown = deliver(session, mail("Re: [BO-999999] Broken kettle"))

    assert (outcome.status, outcome.item.id) == ("followup", item.id)
    assert (lower.status, lower.item.id) == ("followup", item.id)
    assert unknown.status == "created" and unknown.item.id != item.id


def test_a_reply_to_a_resolved_item_reopens_it(session, world):
    item, first_id, _ = new_item(session)
    lifecycle.change_status(session, item, "resolved", actor=world.supervisor)
    session.commit()

    outcome = deliver(session, mail("Re: Broken kettle", in_reply_to=first_id, body="Still broken."))

    item = session.get(WorkItem, item.id)
    assert (outcome.status, outcome.item.id) == ("followup", item.id)
    assert item.status == "open" and item.resolved_at is None
    reopened = events(session, item, "status_changed")[-1]
    assert reopened.data["from"] == "resolved" and reopened.data["to"] == "open"
    assert reopened.actor_label == "intake" and "anna@customer.example.com" in reopened.data["comment"]


def test_a_reply_to_a_closed_item_makes_a_new_item_that_refers_to_it(session, world):
    old, first_id, _ = new_item(session)
    lifecycle.change_status(session, old, "resolved", actor=world.supervisor)
    lifecycle.change_status(session, old, "closed", actor=world.supervisor)
    session.commit()

    outcome = deliver(session, mail("Re: Broken kettle", in_reply_to=first_id, body="It broke again."))

    assert outcome.status == "created"
    new = outcome.item
    assert new.id != old.id and session.get(WorkItem, old.id).status == "closed"
    assert new.description.startswith(f"Follow-up to {old.ref}, which is closed.")
    assert [e.data for e in events(session, new, "related")] == [{"closed_item": old.ref}]
    assert len(messages(session, new, "inbound")) == 1 and len(messages(session, old, "inbound")) == 1
    assert len(messages(session, new, "outbound")) == 1  # a new item: acknowledged


def test_a_follow_up_from_a_stranger_is_flagged_and_changes_nothing(session, world):
    item, first_id, _ = new_item(session)
    state.assign(session, item, world.executive, actor=world.supervisor)
    lifecycle.change_status(session, item, "pending_customer", actor=world.supervisor)
    session.commit()
    before = (item.status, item.assignee_id, item.priority, item.team_id)

    outcome = deliver(session, mail("Re: Broken kettle", sender="Mallory <mallory@evil.example>",
                                    in_reply_to=first_id, body="Please send the refund to my account instead."))

    item = session.get(WorkItem, item.id)
    assert (outcome.status, outcome.item.id) == ("followup", item.id)
    assert (item.status, item.assignee_id, item.priority, item.team_id) == before
    stranger = messages(session, item, "inbound")[-1]
    assert stranger.from_address == "mallory@evil.example" and stranger.flagged_for_review
    [flag] = events(session, item, "flagged_for_review")
    assert flag.data["message_id"] == stranger.id and "mallory@evil.example" in flag.data["reason"]
    assert events(session, item, "email_received")[-1].data["flagged_for_review"] is True

    # The requester's own follow-up is not flagged.
    ok = deliver(session, mail("Re: Broken kettle", in_reply_to=first_id))
    assert not messages(session, ok.item, "inbound")[-1].flagged_for_review


def test_a_stranger_does_not_reopen_a_resolved_item(session, world):
    item, first_id, _ = new_item(session)
    lifecycle.change_status(session, item, "resolved", actor=world.supervisor)
    session.commit()

    outcome = deliver(session, mail("Re: Broken kettle", sender="mallory@evil.example", in_reply_to=first_id))

    item = session.get(WorkItem, item.id)
    assert (outcome.status, outcome.item.id) == ("followup", item.id)
    assert item.status == "resolved" and item.resolved_at is not None
    assert messages(session, item, "inbound")[-1].flagged_for_review
    assert [e.data["to"] for e in events(session, item, "status_changed")] == ["resolved"]


def test_a_cc_participant_is_not_a_stranger(session, world):
    item, first_id, _ = new_item(session, cc="Bob <bob@customer.example.com>")

    outcome = deliver(session, mail("Re: Broken kettle", sender="bob@customer.example.com", in_reply_to=first_id))

    assert outcome.status == "followup"
    assert not messages(session, item, "inbound")[-1].flagged_for_review


def test_the_full_loop_executive_reply_then_customer_reply(session, world, tmp_path):
    item, first_id, _ = new_item(session)
    state.assign(session, item, world.executive, actor=world.executive)
    reply = lifecycle.add_reply(session, item, actor=world.executive, body="We will send a new kettle.")
    session.commit()
    reply_id, item_id, ref = reply.id, item.id, item.ref

    _, sent = sent_file(tmp_path, reply_id)
    our_id = sent["Message-ID"]
    assert our_id.endswith(f"@{DOMAIN}>") and our_id == session.get(Message, reply_id).message_id
    assert sent["To"] == "anna@customer.example.com" and sent["Auto-Submitted"] == "no"
    assert first_id in sent["References"] and sent["Subject"] == f"[{ref}] Broken kettle"

    # The customer answers from their mail client: no tag in the subject, only In-Reply-To.
    answer = mail("Re: your message", in_reply_to=our_id, references=f"{first_id} {our_id}",
                  body="Thanks, when will it arrive?")
    outcome = deliver(session, answer)

    assert (outcome.status, outcome.item.id) == ("followup", item_id)
    inbound = messages(session, outcome.item, "inbound")
    assert inbound[-1].body_text.startswith("Thanks, when will it arrive?")
    assert inbound[-1].in_reply_to == our_id and not inbound[-1].flagged_for_review
    assert count(session, WorkItem) == 1


# --- duplicates -----------------------------------------------------------------------------

def test_the_same_message_id_twice_is_a_duplicate(session, world):
    first = deliver(session, mail(message_id="<same@customer.example.com>"))
    raw2 = mail("Resent", message_id="<same@customer.example.com>", body="Resent through another relay.")

    second = deliver(session, raw2)

    assert first.status == "created" and second.status == "duplicate"
    assert second.item.id == first.item.id
    row = session.get(InboundEmail, second.inbound.id)
    assert row.raw is None and row.size == len(raw2) and row.duplicate_of_id == first.inbound.id
    assert row.status == "duplicate" and row.work_item_id == first.item.id
    assert session.get(InboundEmail, first.inbound.id).raw is not None
    assert count(session, WorkItem) == 1
    assert count(session, Message, Message.kind == "inbound") == 1
    assert count(session, Message) == 2  # the first mail and its acknowledgement
    assert len(send_jobs(session)) == 1


def test_without_a_message_id_the_same_bytes_twice_are_a_duplicate(session, world):
    raw = mail(message_id=None)
    first = deliver(session, raw)
    second = deliver(session, raw)
    other = deliver(session, mail(message_id=None, body="Different bytes, no Message-ID either."))

    assert (first.status, second.status, other.status) == ("created", "duplicate", "created")
    assert session.get(InboundEmail, second.inbound.id).raw is None
    assert session.get(InboundEmail, second.inbound.id).duplicate_of_id == first.inbound.id
    assert count(session, WorkItem) == 2


def test_processing_twice_does_nothing_the_second_time(session, world):
    inbound = filing.receive(session, mail(), source="smtp")
    first = filing.process(session, inbound)
    again = filing.process(session, inbound)
    session.commit()

    assert first.status == again.status == "created" and again.item.id == first.item.id
    assert count(session, WorkItem) == 1 and inbound.attempts == 1


# --- acknowledgements -------------------------------------------------------------------

@pytest.mark.parametrize("raw, reason", [
    (mail("Out of office", auto_submitted="auto-replied"), "auto-submitted"),
    (mail("Digest", precedence="bulk"), "bulk or list mail"),
    (mail("Announcement", list_id="Announcements <announce.lists.example.org>"), "bulk or list mail"),
    (corpus("auto_reply.eml"), "auto-submitted"),
    (corpus("list_message.eml"), "bulk or list mail"),
    (mail("Your mail", sender="MAILER-DAEMON@mx.example.net"), "mailer-daemon or postmaster"),
    (mail("Report", sender="Postmaster <postmaster@example.org>"), "mailer-daemon or postmaster"),
], ids=["auto-submitted", "precedence-bulk", "list-id", "corpus-auto-reply", "corpus-list", "mailer-daemon",
        "postmaster"])
def test_no_acknowledgement_for_automatic_or_bulk_mail(session, world, raw, reason):
    outcome = deliver(session, raw)

    assert outcome.status == "created"
    assert messages(session, outcome.item, "outbound") == []
    assert send_jobs(session) == []
    [suppressed] = events(session, outcome.item, "ack_suppressed")
    assert suppressed.data == {"reason": reason}
    assert events(session, outcome.item, "acknowledged") == []


@pytest.mark.parametrize("kind", ["from-us", "our-domain-id"])
def test_our_own_outgoing_mail_is_quarantined_as_a_loop(session, world, kind):
    if kind == "from-us":
        raw = mail("Hello", sender="Backdesk <backdesk@backdesk.example.com>")
    else:
        raw = mail("Hello", sender="someone@example.org", message_id=f"<abc.1@{DOMAIN}>")

    outcome = deliver(session, raw)

    assert (outcome.status, outcome.reason) == ("quarantined", "mail_loop")
    assert session.get(InboundEmail, outcome.inbound.id).raw == raw
    assert count(session, WorkItem) == 0 and count(session, Message) == 0 and send_jobs(session) == []


def test_our_acknowledgement_coming_back_is_a_loop_not_an_item(session, world, tmp_path):
    _, _, ack = new_item(session)
    raw_out, _ = sent_file(tmp_path, ack.id)

    outcome = deliver(session, raw_out)

    assert (outcome.status, outcome.reason) == ("quarantined", "mail_loop")
    assert count(session, WorkItem) == 1 and count(session, Message) == 2


def test_acknowledgements_per_sender_are_capped_per_hour(app, session, world, monkeypatch):
    monkeypatch.setitem(app.config, "INTAKE_ACKS_PER_SENDER_HOUR", 2)
    start = utcnow()

    outcomes = [deliver(session, mail(f"Request {n}"), now=start + timedelta(minutes=n)) for n in range(3)]
    other = deliver(session, mail("Request from Bob", sender="bob@customer.example.com"),
                    now=start + timedelta(minutes=4))
    later = deliver(session, mail("Request 4"), now=start + timedelta(minutes=62))

    assert all(o.status == "created" for o in outcomes + [other, later])
    acked = [len(messages(session, o.item, "outbound")) for o in outcomes]
    assert acked == [1, 1, 0]
    [suppressed] = events(session, outcomes[2].item, "ack_suppressed")
    assert suppressed.data["reason"] == "more than 2 acknowledgements to this sender in an hour"
    assert len(messages(session, other.item, "outbound")) == 1  # another sender has a cap of their own
    assert len(messages(session, later.item, "outbound")) == 1  # an hour later the first two no longer count
    assert len(send_jobs(session)) == 4


# --- bounces --------------------------------------------------------------------------------

def test_a_bounce_for_our_acknowledgement_is_recorded_on_its_item(session, world):
    item, _, ack = new_item(session)

    outcome = deliver(session, dsn(ack.message_id))

    assert outcome.status == "followup" and outcome.item.id == item.id
    assert session.get(Message, ack.id).send_status == "bounced"
    [bounce] = events(session, item, "bounce")
    assert bounce.data["message_id"] == ack.id and bounce.data["to"] == "anna@customer.example.com"
    assert "550 5.1.1 User unknown" in bounce.data["summary"]
    assert count(session, WorkItem) == 1
    assert len(messages(session, item, "inbound")) == 1  # a bounce is not a message from the customer
    assert len(send_jobs(session)) == 1  # and is never acknowledged


def test_a_bounce_for_an_executive_reply_marks_that_reply(session, world):
    item, _, ack = new_item(session)
    reply = lifecycle.add_reply(session, item, actor=world.supervisor, body="Here is your answer.")
    session.commit()

    outcome = deliver(session, dsn(reply.message_id, sender="postmaster@mx.example.net"))

    assert outcome.status == "followup" and outcome.item.id == item.id
    assert session.get(Message, reply.id).send_status == "bounced"
    assert session.get(Message, ack.id).send_status == "queued"


@pytest.mark.parametrize("raw", [corpus("bounce_dsn.eml"), dsn("<never-sent@mail.backdesk.test>")],
                         ids=["corpus", "unknown-id"])
def test_a_bounce_for_a_message_we_did_not_send_is_quarantined(session, world, raw):
    outcome = deliver(session, raw)

    assert (outcome.status, outcome.reason) == ("quarantined", "unmatched_bounce")
    assert session.get(InboundEmail, outcome.inbound.id).raw == raw
    assert count(session, WorkItem) == 0


# --- quarantine -----------------------------------------------------------------------------

QUARANTINED = {
    "no_sender": lambda: corpus("missing_from.eml"),
    "invalid_sender": lambda: corpus("bad_sender.eml"),
    "too_deep": lambda: nested_multipart(1000),
    "blocked_attachment": lambda: corpus("exe_attachment.eml"),
    "oversize": lambda: mail(body="x" * 5000),
    "no_mailbox": lambda: mail(to="someone@elsewhere.example.com"),
}


@pytest.mark.parametrize("reason", sorted(QUARANTINED))
def test_unfileable_mail_is_quarantined_with_its_reason_and_raw_bytes(app, session, world, monkeypatch, reason):
    if reason == "oversize":
        monkeypatch.setitem(app.config, "INTAKE_MAX_MESSAGE_BYTES", 4000)
    raw = QUARANTINED[reason]()

    outcome = deliver(session, raw)

    assert (outcome.status, outcome.reason, outcome.item) == ("quarantined", reason, None)
    row = session.get(InboundEmail, outcome.inbound.id)
    assert row.raw == raw and row.status == "quarantined" and row.reason == reason
    assert row.detail and row.processed_at is not None and row.work_item_id is None
    assert count(session, WorkItem) == 0 and count(session, Message) == 0 and send_jobs(session) == []


def test_no_mailbox_detail_names_the_recipients(session, world):
    outcome = deliver(session, mail(to="someone@elsewhere.example.com", cc="other@elsewhere.example.com"))

    assert "someone@elsewhere.example.com, other@elsewhere.example.com" in outcome.inbound.detail


def test_a_quarantined_mail_can_be_retried_after_a_mailbox_is_added(session, world):
    outcome = deliver(session, mail(to="new@backdesk.example.com"))
    assert outcome.reason == "no_mailbox"
    mailboxes.create_mailbox(session, address="new@backdesk.example.com", type="general", team_name="Support")

    retried = intake_quarantine.retry(session, session.get(InboundEmail, outcome.inbound.id), actor="admin@example.com")
    session.commit()

    assert retried.status == "created"
    assert [e.data["was"] for e in events(session, retried.item, "released_from_quarantine")] == ["no_mailbox"]


def test_every_corpus_file_is_filed_somewhere_and_nothing_raises(session, world):
    outcomes = {}
    for path in sorted(CORPUS.glob("*.eml")):
        raw = path.read_bytes()
        outcome = deliver(session, raw)
        outcomes[path.name] = outcome.status
        row = session.get(InboundEmail, outcome.inbound.id)
        assert row.status == outcome.status != "received"
        assert row.raw == raw or row.status == "duplicate"
        if outcome.status == "quarantined":
            assert row.reason in filing.QUARANTINE_REASONS and row.detail

    assert outcomes["garbage_bytes.eml"] == "quarantined"
    assert outcomes["utf8_b_subject.eml"] == "created"
    assert outcomes["shift_jis_subject.eml"] == "created"


# --- bodies and attachments -----------------------------------------------------------------

def test_html_only_mail_is_sanitised_and_inline_images_point_at_our_attachments(session, world):
    outcome = deliver(session, corpus("html_only.eml"))

    assert outcome.status == "created"
    item = outcome.item
    [message] = messages(session, item, "inbound")
    html = message.body_html
    lowered = html.lower()
    for bad in ("<script", "onclick", "onload", "javascript:", "<iframe", "<form", "<style", "track.example.net"):
        assert bad not in lowered, bad
    assert "Hello there" in message.body_text and "Second & last" in message.body_text
    [chart] = message.attachments
    assert (chart.content_type, chart.content_id, chart.is_inline) == ("image/png", "chart@shop.example.com", True)
    assert f'src="/items/{item.ref}/attachments/{chart.id}/inline"' in html
    assert "cid:" not in html
    # The tracking pixel and the image with an unknown cid keep their alt text but lose their src.
    for alt in ("tracking pixel", "Missing"):
        tag = re.search(rf'<img[^>]*alt="{alt}"[^>]*>', html).group(0)
        assert "src=" not in tag
    assert 'href="https://shop.example.com/offer"' in html


def test_the_same_attachment_in_two_mails_is_stored_once(session, world):
    first = deliver(session, mail("Invoice", attachments=[("invoice.pdf", PDF, "application/pdf")]))
    second = deliver(session, mail("Invoice again", sender="bob@customer.example.com",
                                   attachments=[("copy of invoice.pdf", PDF, "application/pdf")]))

    assert first.status == second.status == "created"
    rows = session.scalars(sa.select(Attachment).order_by(Attachment.id)).all()
    assert [a.filename for a in rows] == ["invoice.pdf", "copy of invoice.pdf"]
    assert rows[0].sha256 == rows[1].sha256 and rows[0].message_id != rows[1].message_id
    assert all(a.content_type == "application/pdf" and a.size == len(PDF) for a in rows)
    assert count(session, Blob) == 1
    assert session.get(Blob, rows[0].sha256).data == PDF


def test_attachment_types_are_sniffed_from_the_bytes(session, world):
    outcome = deliver(session, mail("Photo", attachments=[("photo.pdf", JPEG, "application/pdf"),
                                                          ("scan.bin", PNG, "application/octet-stream")]))

    [message] = messages(session, outcome.item, "inbound")
    found = {a.filename: (a.content_type, a.declared_content_type) for a in message.attachments}
    assert found == {"photo.pdf": ("image/jpeg", "application/pdf"),
                     "scan.bin": ("image/png", "application/octet-stream")}


def test_a_follow_up_with_attachments_keeps_them_on_its_message(session, world):
    item, first_id, _ = new_item(session)

    deliver(session, mail("Re: Broken kettle", in_reply_to=first_id, attachments=[("receipt.pdf", PDF,
                                                                                    "application/pdf")]))

    follow_up = messages(session, item, "inbound")[-1]
    assert [a.filename for a in follow_up.attachments] == ["receipt.pdf"]


def test_an_attached_email_is_kept_as_an_attachment(session, world):
    outcome = deliver(session, corpus("forwarded_message.eml"))

    assert outcome.status == "created"
    [message] = messages(session, outcome.item, "inbound")
    [attached] = message.attachments
    assert attached.content_type == "message/rfc822" and attached.filename == "Server down.eml"
    data = session.get(Blob, attached.sha256).data
    assert b"Message-ID: <inner-original@example.com>" in data and b"JVBERi0xLjQK" in data
    assert "inner body" not in outcome.item.description
    assert "Please look at the message below." in outcome.item.description


# --- header injection -----------------------------------------------------------------------

def test_a_crlf_subject_cannot_inject_a_header_into_the_acknowledgement(session, world, tmp_path):
    raw = corpus("crlf_injection_subject.eml")
    assert b"=?utf-8?q?hi=0D=0ABcc:_x@example.com?=" in raw

    outcome = deliver(session, raw)

    assert outcome.status == "created"
    item = outcome.item
    assert "\r" not in item.subject and "\n" not in item.subject
    [ack] = messages(session, item, "outbound")
    ack_id, ref = ack.id, item.ref
    raw_out, sent = sent_file(tmp_path, ack_id)

    assert sent["Bcc"] is None
    assert not any(line.lower().startswith(b"bcc:") for line in raw_out.splitlines())
    assert sent["Subject"] == f"[{ref}] hi Bcc: x@example.com"
    assert sent["To"] == "attacker@example.com"
    assert session.get(Message, ack_id).send_status == "sent"


# --- limits ---------------------------------------------------------------------------------

def test_a_long_subject_is_cut_to_fit_not_quarantined(session, world):
    subject = "Refund " + "very " * 196 + "urgent"  # 993 characters: the item keeps 255, a Message up to 998

    outcome = deliver(session, mail(subject))

    assert outcome.status == "created", outcome.inbound.detail
    item = outcome.item
    assert item.subject == subject[:lifecycle.MAX_SUBJECT].strip()
    [received] = messages(session, item, "inbound")
    assert received.subject == subject  # the message keeps the whole subject
    [ack] = messages(session, item, "outbound")
    assert ack.subject.startswith(f"[{item.ref}] Refund very") and len(ack.subject) <= 998


def test_a_huge_follow_up_to_a_closed_item_still_becomes_a_new_item(session, world):
    old, first_id, _ = new_item(session)
    lifecycle.change_status(session, old, "resolved", actor=world.supervisor)
    lifecycle.change_status(session, old, "closed", actor=world.supervisor)
    session.commit()

    outcome = deliver(session, mail("Re: Broken kettle", in_reply_to=first_id, body="broken again\n" * 10_000))

    assert outcome.status == "created", outcome.inbound.detail
    assert outcome.item.description.startswith(f"Follow-up to {old.ref}")
    assert len(outcome.item.description) <= lifecycle.MAX_BODY


def test_a_long_content_id_does_not_break_the_intake(session, world):
    cid = "x" * 300 + "@example.com"
    raw = (f"From: anna@customer.example.com\r\nTo: {DESK}\r\nSubject: Photo\r\nMessage-ID: {new_id()}\r\n"
           'MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary="b1"\r\n\r\n'
           f'--b1\r\nContent-Type: text/html\r\n\r\n<p><img src="cid:{cid}" alt="photo"></p>\r\n'
           f"--b1\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <{cid}>\r\n\r\n"
           f"{base64.b64encode(PNG).decode()}\r\n--b1--\r\n").encode()

    outcome = deliver(session, raw)

    assert outcome.status == "created"
    [attachment] = messages(session, outcome.item, "inbound")[0].attachments
    assert attachment.content_type == "image/png" and len(attachment.content_id or "") <= 255


def test_mail_from_our_own_address_is_a_loop_even_with_a_display_name_configured(app, session, world,
                                                                                 monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_FROM", "Backdesk Support <Support@Backdesk.example.com>")

    outcome = deliver(session, mail("Hello", sender="support@backdesk.example.com"))

    assert (outcome.status, outcome.reason) == ("quarantined", "mail_loop")


# --- automatic replies, replies to MAIL_FROM, threading of our replies ------------------------

OOO_HEADERS = [
    {"Auto-Submitted": "auto-replied"},
    {"X-Autoreply": "yes"},
    {"Precedence": "auto_reply"},
    {},  # recognised by its subject alone
]


@pytest.mark.parametrize("headers", OOO_HEADERS, ids=["auto-submitted", "x-autoreply", "precedence", "subject"])
def test_an_out_of_office_reply_does_not_reopen_a_resolved_item(session, world, headers):
    item, first_id, ack = new_item(session)
    lifecycle.change_status(session, item, "resolved", actor=world.supervisor)
    session.commit()
    acks_before = len(messages(session, item, "outbound"))

    outcome = deliver(session, mail(f"Automatic reply: [{item.ref}] Broken kettle", in_reply_to=ack.message_id,
                                    body="I am out of the office until Monday.", **headers))

    item = session.get(WorkItem, item.id)
    assert (outcome.status, outcome.item.id) == ("followup", item.id)
    assert item.status == "resolved" and item.resolved_at is not None
    assert [e.data["to"] for e in events(session, item, "status_changed")] == ["resolved"]
    assert messages(session, item, "inbound")[-1].body_text.startswith("I am out of the office")
    assert len(messages(session, item, "outbound")) == acks_before  # no acknowledgement
    assert len(send_jobs(session)) == 1  # only the first acknowledgement's


def test_a_person_whose_subject_mentions_absence_still_reopens(session, world):
    item, first_id, _ = new_item(session)
    lifecycle.change_status(session, item, "resolved", actor=world.supervisor)
    session.commit()

    deliver(session, mail("Out of office until May, but the kettle is still broken", in_reply_to=first_id))

    assert session.get(WorkItem, item.id).status == "open"


def test_an_out_of_office_reply_to_a_closed_item_is_filed_there_not_as_new_work(session, world):
    item, first_id, ack = new_item(session)
    lifecycle.change_status(session, item, "resolved", actor=world.supervisor)
    lifecycle.change_status(session, item, "closed", actor=world.supervisor)
    session.commit()

    outcome = deliver(session, corpus_like_ooo(item.ref, ack.message_id))

    assert (outcome.status, outcome.item.id) == ("followup", item.id)
    assert session.get(WorkItem, item.id).status == "closed"
    assert count(session, WorkItem) == 1 and len(send_jobs(session)) == 1


def corpus_like_ooo(ref, in_reply_to):
    return mail(f"Automatic reply: [{ref}] Broken kettle", in_reply_to=in_reply_to, Auto_Submitted="auto-replied",
                X_Auto_Response_Suppress="All", body="I am away.")


OURS = "backdesk@backdesk.example.com"  # MAIL_FROM in these tests


def test_a_reply_to_mail_from_about_a_resolved_item_lands_on_it(session, world):
    item, first_id, ack = new_item(session)
    lifecycle.change_status(session, item, "resolved", actor=world.supervisor)
    session.commit()

    outcome = deliver(session, mail("Re: your request", to=f"Backdesk <{OURS}>", in_reply_to=ack.message_id,
                                    body="Still broken."))

    item = session.get(WorkItem, item.id)
    assert (outcome.status, outcome.item.id) == ("followup", item.id)
    assert item.status == "open"


@pytest.mark.parametrize("how", ["in_reply_to", "references", "tag"])
def test_a_reply_to_mail_from_about_a_closed_item_is_filed_not_quarantined(session, world, how):
    old, first_id, ack = new_item(session)
    lifecycle.change_status(session, old, "resolved", actor=world.supervisor)
    lifecycle.change_status(session, old, "closed", actor=world.supervisor)
    session.commit()
    threading = {"in_reply_to": {"in_reply_to": ack.message_id},
                 "references": {"references": f"{first_id} {ack.message_id}"},
                 "tag": {}}[how]

    outcome = deliver(session, mail(f"Re: [{old.ref}] Broken kettle", to=OURS, body="It broke again.", **threading))

    assert outcome.status == "created", outcome
    new = outcome.item
    assert new.id != old.id and session.get(WorkItem, old.id).status == "closed"
    assert (new.team_id, new.type) == (old.team_id, old.type)  # filed where the closed item was
    assert new.description.startswith(f"Follow-up to {old.ref}, which is closed.")
    assert [e.data for e in events(session, new, "related")] == [{"closed_item": old.ref}]
    assert session.get(InboundEmail, outcome.inbound.id).status == "created"
    assert len(messages(session, new, "outbound")) == 1  # the requester is told the new reference


def test_mail_to_mail_from_that_answers_nothing_is_quarantined_with_a_clear_reason(session, world):
    outcome = deliver(session, mail("Hello there", to=OURS))

    assert (outcome.status, outcome.reason) == ("quarantined", "no_mailbox")
    row = session.get(InboundEmail, outcome.inbound.id)
    assert OURS in row.detail and "answers none of our messages" in row.detail
    assert row.raw is not None and count(session, WorkItem) == 0


def test_our_reply_answers_the_customers_latest_mail_not_our_acknowledgement(session, world, tmp_path):
    item, first_id, ack = new_item(session)
    state.assign(session, item, world.executive, actor=world.supervisor)

    reply = lifecycle.add_reply(session, item, actor=world.executive, body="We are on it.")
    session.commit()

    assert reply.in_reply_to == first_id != ack.message_id
    assert reply.references.split() == [first_id]

    # The customer answers our reply from their client; our next reply answers that mail.
    answer_id = new_id()
    deliver(session, mail("Re: We are on it", message_id=answer_id, in_reply_to=reply.message_id,
                          references=f"{first_id} {reply.message_id}"))
    second = lifecycle.add_reply(session, session.get(WorkItem, item.id), actor=world.executive, body="Sent.")
    session.commit()

    assert second.in_reply_to == answer_id
    assert second.references.split() == [first_id, reply.message_id, answer_id]
    _, sent = sent_file(tmp_path, second.id)
    assert sent["In-Reply-To"] == answer_id
    assert sent["References"].split()[0] == first_id and sent["References"].split()[-1] == answer_id


def test_our_reply_threads_on_the_first_mail_even_when_the_latest_has_no_references(session, world):
    item, first_id, _ = new_item(session)
    tagged_id = new_id()
    deliver(session, mail(f"[{item.ref}] one more photo", message_id=tagged_id))  # found by its tag only
    state.assign(session, item, world.executive, actor=world.supervisor)

    reply = lifecycle.add_reply(session, session.get(WorkItem, item.id), actor=world.executive, body="Thanks.")

    assert reply.in_reply_to == tagged_id
    assert reply.references.split() == [first_id, tagged_id]


def test_a_strangers_mail_is_not_what_our_reply_answers(session, world):
    item, first_id, _ = new_item(session)
    deliver(session, mail("Re: Broken kettle", sender="mallory@evil.example", in_reply_to=first_id))
    state.assign(session, item, world.executive, actor=world.supervisor)

    reply = lifecycle.add_reply(session, session.get(WorkItem, item.id), actor=world.executive, body="Thanks.")

    assert reply.in_reply_to == first_id


def test_a_long_thread_keeps_the_first_id_and_the_latest_ones_in_references(session, world):
    item, first_id, _ = new_item(session)
    ids = [new_id() for _ in range(30)]
    deliver(session, mail("Re: Broken kettle", message_id=ids[-1], in_reply_to=ids[-2],
                          references=" ".join([first_id] + ids[:-1])))
    state.assign(session, item, world.executive, actor=world.supervisor)

    reply = lifecycle.add_reply(session, session.get(WorkItem, item.id), actor=world.executive, body="Thanks.")

    references = reply.references.split()
    assert len(references) == lifecycle.MAX_REFERENCES
    assert references[0] == first_id and references[-1] == ids[-1] and reply.in_reply_to == ids[-1]
