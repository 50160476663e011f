"""The bulk import path of `flask intake file` (services.intake.bulk.import_raw_messages).

It writes in batches (events and outbox jobs as multi-row INSERTs, inbound rows updated per
batch, items and messages without ORM flushes) and may parse in another process. These tests
hold it to the same results as filing each message on its own, and to the same guarantees:
nothing lost when one message fails, jobs handed over only after the commit, acknowledgement
cap, auto-assignment on arrival.
"""
import hashlib
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from queue_app.db import outbox as db_outbox
from queue_app.models import (
    Attachment,
    Blob,
    Event,
    InboundEmail,
    Message,
    OutboxJob,
    WorkItem,
)
from queue_app.services.intake import bulk as intake_bulk
from queue_app.services.intake import filing as intake_filing
from queue_app.services.intake import mailboxes
from queue_app.services.items import lifecycle
from tests.integration.test_intake import PNG, corpus

DESK = "desk@backdesk.example.com"
RETURNS = "returns@backdesk.example.com"


def mail(subject, *, message_id, sender="Anna K <anna@customer.example.com>", to=DESK, body="Hello.\n",
         attachment=None, **headers):
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = message_id
    msg["Date"] = "Mon, 23 Nov 2026 09:00:00 +0000"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    if attachment:
        msg.add_attachment(attachment, maintype="image", subtype="png", filename="photo.png")
    return bytes(msg)


def mixed_batch():
    """New items, replies by header and by tag, a resend, a stranger, an attachment twice, list mail,
    mail for nobody, an out-of-office reply and garbage: every path of process()."""
    raws = [
        mail("Broken kettle", message_id="<k1@c.example>", attachment=PNG),
        mail("Refund please", message_id="<k2@c.example>", to=RETURNS, sender="bob@c.example"),
        mail("Re: Broken kettle", message_id="<k3@c.example>", in_reply_to="<k1@c.example>", attachment=PNG),
        mail("Re: Broken kettle", message_id="<k4@c.example>", sender="mallory@evil.example",
             in_reply_to="<k1@c.example>"),
        mail("[BO-000002] more", message_id="<k5@c.example>", sender="bob@c.example"),
        mail("Automatic reply: Broken kettle", message_id="<k6@c.example>", in_reply_to="<k1@c.example>",
             Auto_Submitted="auto-replied"),
        mail("Digest", message_id="<k7@c.example>", List_Id="<news.example>"),
        mail("Hello", message_id="<k8@c.example>", to="someone@else.example"),
        mail("No id", message_id=None),
        mail("No id", message_id=None),  # the same bytes again: a duplicate
        corpus("garbage_bytes.eml"),
        corpus("html_only.eml"),
    ]
    raws.append(raws[0])  # a resend of the first
    return raws


def snapshot(session):
    """Everything intake wrote, without ids that depend on the order of writes elsewhere or clocks."""
    session.expire_all()

    def rows(query):
        return [tuple(r) for r in session.execute(query)]

    return {
        "items": rows(sa.select(WorkItem.ref, WorkItem.type, WorkItem.status, WorkItem.priority, WorkItem.team_id,
                                WorkItem.requester_email, WorkItem.subject, WorkItem.description,
                                WorkItem.sla_policy_id, WorkItem.sla_state, WorkItem.sla_version,
                                WorkItem.assignee_id).order_by(WorkItem.id)),
        "messages": rows(sa.select(Message.work_item_id, Message.kind, Message.in_reply_to, Message.references,
                                   Message.from_address, Message.to_addresses, Message.subject, Message.body_text,
                                   Message.body_html, Message.is_automatic, Message.flagged_for_review,
                                   Message.send_status, Message.inbound_email_id).order_by(Message.id)),
        "attachments": rows(sa.select(Attachment.message_id, Attachment.filename, Attachment.content_type,
                                      Attachment.sha256, Attachment.is_inline).order_by(Attachment.id)),
        "blobs": rows(sa.select(Blob.sha256, Blob.size).order_by(Blob.sha256)),
        "events": [(e.work_item_id, e.kind, e.actor_label,
                    {k: v for k, v in e.data.items() if not k.endswith("_due")})
                   for e in session.scalars(sa.select(Event).order_by(Event.id))],
        "inbound": rows(sa.select(InboundEmail.status, InboundEmail.reason, InboundEmail.detail,
                                  InboundEmail.work_item_id, InboundEmail.duplicate_of_id, InboundEmail.message_id,
                                  InboundEmail.sha256, InboundEmail.mailbox_id, InboundEmail.raw.is_(None),
                                  InboundEmail.attempts).order_by(InboundEmail.id)),
        "jobs": [(j.job_path, j.args[:1] if j.job_path.endswith("run_checks") else j.args, j.run_at is None)
                 for j in session.scalars(sa.select(OutboxJob).order_by(OutboxJob.id))],
    }


def reset_rows(session):
    session.rollback()
    for model in (Attachment, Message, Event, OutboxJob, InboundEmail, Blob, WorkItem):
        session.execute(sa.delete(model))
    session.commit()  # SQLite numbers rows from 1 again (max + 1), as in the other run


@pytest.fixture
def world(session, make_team, app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "INSTANCE_DIR", str(tmp_path))
    monkeypatch.setitem(app.config, "MAIL_DOMAIN", "mail.backdesk.test")
    make_team(name="Support", work_types=["general"])
    make_team(name="Returns", work_types=["return"])
    mailboxes.create_mailbox(session, address=DESK, type="general", team_name="Support")
    mailboxes.create_mailbox(session, address=RETURNS, type="return", team_name="Returns", priority="high")
    session.commit()


def one_at_a_time(session, raws):
    counts = {}
    for raw in raws:
        if intake_filing.find_known(session, intake_filing.peek_message_id(raw), hashlib.sha256(raw).hexdigest()) is not None:
            status = "duplicate"
        else:
            status = intake_filing.process(session, intake_filing.receive(session, raw, source="file")).status
        session.commit()
        counts[status] = counts.get(status, 0) + 1
    return counts


def uses_postgres(session):
    return session.get_bind().dialect.name == "postgresql"


@pytest.mark.parametrize("read_ahead", [False, True])
def test_a_bulk_import_writes_what_filing_one_at_a_time_writes(session, world, read_ahead, caplog):
    if uses_postgres(session):
        pytest.skip("ids restart only on SQLite; the comparison needs the same ids in both runs")
    raws = mixed_batch()
    expected_counts = one_at_a_time(session, raws)
    expected = snapshot(session)
    reset_rows(session)

    counts = intake_bulk.import_raw_messages(session, raws, batch=5, read_ahead=read_ahead)

    assert dict(counts) == expected_counts
    assert expected_counts == {"created": 5, "followup": 4, "duplicate": 2, "quarantined": 2}
    assert no_batch_was_refiled(caplog)
    got = snapshot(session)
    for table in expected:
        assert got[table] == expected[table], table


def fail_to_file(monkeypatch, subject):
    """Make filing the new item of the mail with this subject raise; returns the real function."""
    real = intake_filing._create_item

    def flaky(session_, writer, inbound, parsed, *args, **kwargs):
        if parsed.subject == subject:
            raise RuntimeError("disk on fire")
        return real(session_, writer, inbound, parsed, *args, **kwargs)

    monkeypatch.setattr(intake_filing, "_create_item", flaky)
    return real


def test_a_message_that_fails_is_kept_and_quarantined_and_the_others_are_filed(session, world, monkeypatch):
    raws = [mail(f"Request {n}", message_id=f"<f{n}@c.example>", sender=f"u{n}@c.example") for n in range(6)]
    real = fail_to_file(monkeypatch, "Request 3")

    counts = intake_bulk.import_raw_messages(session, raws, batch=4)

    assert dict(counts) == {"created": 5, "quarantined": 1}
    session.expire_all()
    rows = session.scalars(sa.select(InboundEmail).order_by(InboundEmail.id)).all()
    assert len(rows) == 6 and all(r.raw is not None for r in rows)
    [bad] = [r for r in rows if r.status == "quarantined"]
    assert bad.reason == "rejected" and "RuntimeError: disk on fire" in bad.detail and bad.raw == raws[3]
    subjects = sorted(session.scalars(sa.select(WorkItem.subject)))
    assert subjects == [f"Request {n}" for n in (0, 1, 2, 4, 5)]
    # The failed batch was rolled back whole and filed again: no events or jobs twice.
    for item in session.scalars(sa.select(WorkItem)):
        kinds = session.scalars(sa.select(Event.kind).where(Event.work_item_id == item.id)).all()
        assert kinds.count("created") == 1 and kinds.count("acknowledged") == 1
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxJob)
                          .where(OutboxJob.job_path == "workers.mail_out.send_message")) == 5

    # Importing the same messages again creates nothing.
    monkeypatch.setattr(intake_filing, "_create_item", real)
    assert dict(intake_bulk.import_raw_messages(session, raws, batch=4)) == {"duplicate": 6}


def test_jobs_are_handed_over_after_each_commit_with_their_row_ids(app, session, world, monkeypatch):
    delivered = []
    monkeypatch.setitem(app.config, "OUTBOX_DELIVER_ON_COMMIT", True)
    monkeypatch.setattr(db_outbox, "_deliver", lambda jobs: delivered.append(list(jobs)))
    raws = [mail(f"Request {n}", message_id=f"<j{n}@c.example>", sender=f"u{n}@c.example") for n in range(7)]

    intake_bulk.import_raw_messages(session, raws, batch=3)

    assert len(delivered) == 3  # one hand-over per committed batch
    rows = {j.id: (j.job_path, j.args, j.run_at) for j in session.scalars(sa.select(OutboxJob))}
    handed = [job for batch in delivered for job in batch]
    assert sorted(j[0] for j in handed) == sorted(rows)
    for job_id, path, args, run_at in handed:
        assert rows[job_id][:2] == (path, args)


def test_the_acknowledgement_cap_holds_within_one_import(app, session, world, monkeypatch):
    monkeypatch.setitem(app.config, "INTAKE_ACKS_PER_SENDER_HOUR", 3)
    raws = [mail(f"Request {n}", message_id=f"<a{n}@c.example>") for n in range(5)]

    intake_bulk.import_raw_messages(session, raws, batch=2)

    acks = session.scalar(sa.select(sa.func.count()).select_from(Message).where(Message.is_automatic.is_(True)))
    suppressed = session.scalars(sa.select(Event.data).where(Event.kind == "ack_suppressed")).all()
    assert acks == 3 and len(suppressed) == 2 and "more than 3" in suppressed[0]["reason"]


def test_items_are_assigned_on_arrival_when_the_team_has_a_policy(session, world, make_user):
    from queue_app.models import Team

    support = session.scalar(sa.select(Team).where(Team.name == "Support"))
    support.auto_assign = "round_robin"
    a = make_user(email="a@backdesk.example.com", teams=[support])
    b = make_user(email="b@backdesk.example.com", teams=[support])
    session.commit()
    raws = [mail(f"Request {n}", message_id=f"<r{n}@c.example>", sender=f"u{n}@c.example") for n in range(4)]

    intake_bulk.import_raw_messages(session, raws, batch=10)

    session.expire_all()
    assignees = session.scalars(sa.select(WorkItem.assignee_id).order_by(WorkItem.id)).all()
    assert sorted(assignees) == sorted([a.id, b.id, a.id, b.id])
    assert session.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.kind == "assigned")) == 4


def test_replies_within_one_batch_find_the_items_made_earlier_in_it(session, world):
    raws = [mail("Broken kettle", message_id="<t1@c.example>"),
            mail("Re: Broken kettle", message_id="<t2@c.example>", in_reply_to="<t1@c.example>")]

    counts = intake_bulk.import_raw_messages(session, raws, batch=10)

    assert dict(counts) == {"created": 1, "followup": 1}
    [item] = session.scalars(sa.select(WorkItem)).all()
    assert item.ref and lifecycle.get_item(session, item.ref).id == item.id
    assert len(session.scalars(sa.select(Message).where(Message.work_item_id == item.id,
                                                        Message.kind == "inbound")).all()) == 2


def no_batch_was_refiled(caplog):
    """The bulk path did the work: a failed batch is filed again one message at a time, which
    would hide a fault of the bulk path behind a correct result."""
    return not [r for r in caplog.records if "filing them one at a time" in r.getMessage()]


def test_items_of_auto_assigning_and_manual_teams_mixed_in_one_batch_get_their_own_ids(
        session, world, make_user, caplog):
    """Manual teams' items are queued with ids taken beforehand; an auto-assigning team's item
    is an ORM insert in the same transaction. Neither may take the other's id."""
    from queue_app.models import Team

    returns = session.scalar(sa.select(Team).where(Team.name == "Returns"))
    returns.auto_assign = "round_robin"
    make_user(email="r@backdesk.example.com", teams=[returns])
    session.commit()
    raws = []
    for n in range(6):
        to = RETURNS if n % 2 else DESK
        raws.append(mail(f"Request {n}", message_id=f"<m{n}@c.example>", sender=f"u{n}@c.example", to=to,
                         attachment=PNG if n == 4 else None))
        raws.append(mail(f"Re: Request {n}", message_id=f"<m{n}r@c.example>", sender=f"u{n}@c.example",
                         in_reply_to=f"<m{n}@c.example>"))

    counts = intake_bulk.import_raw_messages(session, raws, batch=20)

    assert dict(counts) == {"created": 6, "followup": 6}
    assert no_batch_was_refiled(caplog)
    session.expire_all()
    items = session.scalars(sa.select(WorkItem).order_by(WorkItem.id)).all()
    assert [i.subject for i in items] == [f"Request {n}" for n in range(6)]
    assert all(i.ref == lifecycle.format_ref(i.id) for i in items)
    assert [i.team.name for i in items] == ["Support", "Returns"] * 3
    assert all(i.assignee_id is not None for i in items if i.team.name == "Returns")
    for n, item in enumerate(items):
        inbound = session.scalars(sa.select(Message.subject).where(Message.work_item_id == item.id,
                                                                   Message.kind == "inbound")
                                  .order_by(Message.id)).all()
        assert inbound == [f"Request {n}", f"Re: Request {n}"]
    [attachment] = session.scalars(sa.select(Attachment)).all()
    assert attachment.message.work_item.subject == "Request 4"


def test_replies_in_the_same_and_later_batches_thread_by_header_and_tag_and_know_the_participants(session, world, caplog):
    raws = [
        mail("Broken kettle", message_id="<p1@c.example>", Cc="Carol <carol@c.example>"),
        # the same batch: Carol takes part through the Cc of the mail just filed
        mail("Re: Broken kettle", message_id="<p3@c.example>", sender="carol@c.example", in_reply_to="<p1@c.example>"),
        mail("Other", message_id="<p2@c.example>", sender="zed@c.example"),
        # a later batch: the item and its participants come from the database
        mail("Re: Broken kettle", message_id="<p4@c.example>", sender="dave@c.example", References="<p3@c.example>"),
    ]
    counts = intake_bulk.import_raw_messages(session, raws, batch=2)
    first = session.scalar(sa.select(WorkItem).where(WorkItem.subject == "Broken kettle"))
    # another import: found by its tag, and a Message-ID stored by the first import
    counts += intake_bulk.import_raw_messages(session, [
        mail(f"[{first.ref}] one more thing", message_id="<p5@c.example>"),
        mail("Resent", message_id="<p2@c.example>", sender="zed@c.example"),
    ], batch=2)

    assert dict(counts) == {"created": 2, "followup": 3, "duplicate": 1}
    assert no_batch_was_refiled(caplog)
    rows = session.execute(sa.select(Message.from_address, Message.flagged_for_review)
                           .where(Message.work_item_id == first.id, Message.kind == "inbound")
                           .order_by(Message.id)).all()
    assert rows == [("anna@customer.example.com", False), ("carol@c.example", False), ("dave@c.example", True),
                    ("anna@customer.example.com", False)]


@pytest.mark.parametrize("how", ["raises", "dies"])
def test_if_the_read_ahead_process_fails_the_import_goes_on_from_the_first_message_not_received(
        session, world, caplog, how):
    import os

    raws = [mail(f"Request {n}", message_id=f"<ra{n}@c.example>", sender=f"u{n}@c.example") for n in range(7)]
    importer = os.getpid()

    def messages():
        for n, raw in enumerate(raws):
            if n == 4 and os.getpid() != importer:  # only the read-ahead process's copy fails
                if how == "raises":
                    raise OSError("disk unreadable")
                os._exit(3)
            yield raw

    counts = intake_bulk.import_raw_messages(session, messages(), batch=2, read_ahead=True)

    assert dict(counts) == {"created": 7}
    [warning] = [r.getMessage() for r in caplog.records if "read-ahead process failed" in r.getMessage()]
    assert ("OSError: disk unreadable" if how == "raises" else "exited with code 3") in warning
    # What was handed over before the failure is kept; a process that dies may take the batches
    # it had not yet written out with it, which are then read again here. Each message is filed once.
    assert "from message 5" in warning or (how == "dies" and any(f"from message {n} " in warning for n in (1, 3)))
    assert sorted(session.scalars(sa.select(WorkItem.subject))) == [f"Request {n}" for n in range(7)]
    assert session.scalar(sa.select(sa.func.count()).select_from(InboundEmail)) == 7


def test_a_batch_that_fails_after_a_reply_to_its_own_new_item_is_filed_again_cleanly(session, world, monkeypatch):
    """The reply loads the new item into the session under an id the rollback frees again;
    filing the batch again one message at a time must not meet that stale object."""
    raws = [mail("Broken kettle", message_id="<x1@c.example>"),
            mail("Re: Broken kettle", message_id="<x2@c.example>", in_reply_to="<x1@c.example>"),
            mail("Doomed", message_id="<x3@c.example>", sender="z@c.example")]
    fail_to_file(monkeypatch, "Doomed")

    counts = intake_bulk.import_raw_messages(session, raws, batch=10)

    assert dict(counts) == {"created": 1, "followup": 1, "quarantined": 1}
    [item] = session.scalars(sa.select(WorkItem)).all()
    assert item.subject == "Broken kettle" and item.version > 1  # the reply's touch was written
    assert [m.message_id for m in item.messages if m.kind == "inbound"] == ["<x1@c.example>", "<x2@c.example>"]


def test_a_message_carrying_the_message_id_of_our_own_acknowledgement_is_a_mail_loop(session, world, caplog):
    intake_bulk.import_raw_messages(session, [mail("Broken kettle", message_id="<l1@c.example>")], batch=2)
    ours = session.scalar(sa.select(Message.message_id).where(Message.kind == "outbound"))

    counts = intake_bulk.import_raw_messages(session, [mail("Re: Broken kettle", message_id="<l2@c.example>"),
                                                  mail("Echo", message_id=ours, sender="bot@c.example")], batch=5)

    assert dict(counts) == {"created": 1, "quarantined": 1}
    assert no_batch_was_refiled(caplog)
    assert session.scalar(sa.select(InboundEmail.reason).where(InboundEmail.message_id == ours)) == "mail_loop"
