"""`flask intake file PATH... [--mailbox ADDRESS]` and `flask mailboxes add|list`, through the CLI runner.

The command runs in an app context (and database session) of its own and commits; the
tests read what it committed.
"""
import mailbox
import re
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa

from queue_app.extensions import db as _db
from queue_app.models import (
    Event,
    InboundEmail,
    Mailbox,
    Message,
    OutboxJob,
    RoutingRule,
    WorkItem,
)
from queue_app.services.intake import mailboxes as intake_mailboxes

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
DESK = "desk@backdesk.example.com"
RETURNS = "returns@backdesk.example.com"
SUMMARY = re.compile(r"^(\d+) messages: (\d+) new items, (\d+) follow-ups, (\d+) duplicates, (\d+) quarantined$")
TABLES = (InboundEmail, WorkItem, Message, Event, OutboxJob)


def mail(subject, *, message_id, sender="Anna K <anna@customer.example.com>", to=DESK, body="Hello.\n", **headers):
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg["Date"] = "Mon, 23 Nov 2026 09:00:00 +0000"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


def intake_file(runner, *args):
    return runner.invoke(args=["intake", "file", *[str(a) for a in args]])


def summary(result):
    """(total, new, follow-ups, duplicates, quarantined) from the exact summary line."""
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    match = SUMMARY.fullmatch(lines[-1])
    assert match, result.output
    return tuple(int(n) for n in match.groups())


def row_counts(session):
    session.expire_all()
    return {model.__name__: session.scalar(sa.select(sa.func.count()).select_from(model)) for model in TABLES}


def statuses(session):
    session.expire_all()
    return [row.status for row in session.scalars(sa.select(InboundEmail).order_by(InboundEmail.id))]


@pytest.fixture(autouse=True)
def quiet_outbox(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "INSTANCE_DIR", str(tmp_path))
    monkeypatch.setitem(app.config, "SMTP_HOST", None)


@pytest.fixture
def world(session, make_team):
    make_team(name="Support", work_types=["general"])
    make_team(name="Returns", work_types=["return"])
    intake_mailboxes.create_mailbox(session, address=DESK, type="general", team_name="Support")
    intake_mailboxes.create_mailbox(session, address=RETURNS, type="return", team_name="Returns", priority="high")
    session.commit()


@pytest.fixture
def five_messages():
    """Two new items, a reply to the first, a resend of the first (duplicate) and a mail without From."""
    first = mail("Broken kettle", message_id="<m1@customer.example.com>")
    return [
        first,
        mail("Wrong invoice", message_id="<m2@customer.example.com>", sender="bob@customer.example.com", to=RETURNS),
        mail("Re: Broken kettle", message_id="<m3@customer.example.com>", in_reply_to="<m1@customer.example.com>"),
        first,
        (CORPUS / "missing_from.eml").read_bytes(),
    ]


def as_bytes(message):
    return message if isinstance(message, bytes) else bytes(message)


def test_eml_files(runner, session, world, five_messages, tmp_path):
    paths = []
    for index, message in enumerate(five_messages):
        path = tmp_path / f"{index}.eml"
        path.write_bytes(as_bytes(message))
        paths.append(path)

    result = intake_file(runner, *paths)

    assert result.output.strip() == "5 messages: 2 new items, 1 follow-ups, 1 duplicates, 1 quarantined"
    assert statuses(session) == ["created", "created", "followup", "quarantined"]  # a duplicate stores nothing
    items = session.scalars(sa.select(WorkItem).order_by(WorkItem.id)).all()
    assert [(i.subject, i.team.name, i.requester_email) for i in items] == [
        ("Broken kettle", "Support", "anna@customer.example.com"),
        ("Wrong invoice", "Returns", "bob@customer.example.com"),
    ]
    assert len(session.scalars(sa.select(Message).where(Message.work_item_id == items[0].id,
                                                        Message.kind == "inbound")).all()) == 2
    rows = session.scalars(sa.select(InboundEmail).order_by(InboundEmail.id)).all()
    assert all(row.source == "file" and row.raw == (tmp_path / f"{n}.eml").read_bytes()
               for row, n in zip(rows, (0, 1, 2, 4)))
    assert rows[-1].reason == "no_sender"


def test_an_mbox_file(runner, session, world, five_messages, tmp_path):
    box = mailbox.mbox(str(tmp_path / "export.mbox"))
    for message in five_messages:
        box.add(as_bytes(message))
    box.flush()
    box.close()

    result = intake_file(runner, tmp_path / "export.mbox")

    assert summary(result) == (5, 2, 1, 1, 1)
    assert statuses(session) == ["created", "created", "followup", "quarantined"]
    first = session.scalar(sa.select(InboundEmail).order_by(InboundEmail.id))
    assert first.raw.startswith(b"From: Anna K <anna@customer.example.com>")  # the mbox "From " line is not kept


def test_a_maildir_folder(runner, session, world, five_messages, tmp_path):
    box = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    for message in five_messages[:3]:
        box.add(as_bytes(message))  # new/
    for message in five_messages[3:]:
        key = box.add(as_bytes(message))
        moved = box.get_message(key)
        moved.set_subdir("cur")
        moved.add_flag("S")
        box[key] = moved  # read mail, in cur/
    box.close()

    result = intake_file(runner, tmp_path / "Maildir")

    # Messages delivered in the same second come back in delivery order: the reply follows its original.
    assert summary(result) == (5, 2, 1, 1, 1)
    assert sorted(statuses(session)) == ["created", "created", "followup", "quarantined"]


def test_maildir_messages_are_read_in_delivery_order(runner, session, world, five_messages, tmp_path):
    """Maildir names carry the delivery time; M999 (microseconds) came before M1000 in the same second."""
    folder = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True)
    (folder / "new" / "1763888400.M999P4242Q1.host").write_bytes(as_bytes(five_messages[0]))
    (folder / "new" / "1763888400.M1000P4242Q2.host").write_bytes(as_bytes(five_messages[2]))  # the reply
    (folder / "cur" / "1763888399.M5P4242Q9.host:2,S").write_bytes(as_bytes(five_messages[1]))

    assert summary(intake_file(runner, folder)) == (3, 2, 1, 0, 0)
    rows = session.scalars(sa.select(InboundEmail).order_by(InboundEmail.id)).all()
    assert [r.message_id for r in rows] == ["<m2@customer.example.com>", "<m1@customer.example.com>",
                                            "<m3@customer.example.com>"]


def test_a_mix_of_paths_in_one_run(runner, session, world, five_messages, tmp_path):
    (tmp_path / "one.eml").write_bytes(as_bytes(five_messages[0]))
    box = mailbox.mbox(str(tmp_path / "rest.mbox"))
    for message in five_messages[1:]:
        box.add(as_bytes(message))
    box.close()

    assert summary(intake_file(runner, tmp_path / "one.eml", tmp_path / "rest.mbox")) == (5, 2, 1, 1, 1)


def test_importing_the_same_files_again_creates_nothing(runner, session, world, five_messages, tmp_path):
    box = mailbox.mbox(str(tmp_path / "export.mbox"))
    for message in five_messages:
        box.add(as_bytes(message))
    box.close()
    (tmp_path / "extra.eml").write_bytes((CORPUS / "exe_attachment.eml").read_bytes())
    assert summary(intake_file(runner, tmp_path / "export.mbox", tmp_path / "extra.eml")) == (6, 2, 1, 1, 2)
    before = row_counts(session)

    again = intake_file(runner, tmp_path / "export.mbox", tmp_path / "extra.eml")

    assert again.output.strip() == "6 messages: 0 new items, 0 follow-ups, 6 duplicates, 0 quarantined"
    assert row_counts(session) == before


def test_mailbox_option_routes_mail_addressed_to_none_of_ours(runner, session, world, tmp_path):
    stray = tmp_path / "stray.eml"
    stray.write_bytes(bytes(mail("Forwarded by hand", message_id="<s1@customer.example.com>",
                                 to="someone@elsewhere.example.com")))
    ours = tmp_path / "ours.eml"
    ours.write_bytes(bytes(mail("For the desk", message_id="<s2@customer.example.com>", to=DESK)))

    result = intake_file(runner, stray, ours, "--mailbox", "Returns@Backdesk.example.com")

    assert summary(result) == (2, 2, 0, 0, 0)
    items = {i.subject: i for i in session.scalars(sa.select(WorkItem))}
    assert (items["Forwarded by hand"].team.name, items["Forwarded by hand"].type) == ("Returns", "return")
    assert items["For the desk"].team.name == "Support"  # addressed to one of ours: that one wins
    row = session.scalar(sa.select(InboundEmail).where(InboundEmail.message_id == "<s1@customer.example.com>"))
    assert row.mailbox_id == session.scalar(sa.select(Mailbox.id).where(Mailbox.address == RETURNS))


def test_without_mailbox_option_stray_mail_is_quarantined(runner, session, world, tmp_path):
    stray = tmp_path / "stray.eml"
    stray.write_bytes(bytes(mail("Forwarded by hand", message_id="<s1@customer.example.com>",
                                 to="someone@elsewhere.example.com")))

    assert summary(intake_file(runner, stray)) == (1, 0, 0, 0, 1)
    row = session.scalar(sa.select(InboundEmail))
    assert row.reason == "no_mailbox" and row.raw == stray.read_bytes()


def test_an_unknown_mailbox_is_a_clear_error(runner, session, world, tmp_path):
    path = tmp_path / "one.eml"
    path.write_bytes(bytes(mail("Hello", message_id="<u1@customer.example.com>")))

    result = intake_file(runner, path, "--mailbox", "nowhere@backdesk.example.com")

    assert result.exit_code == 1
    assert "Error: no mailbox nowhere@backdesk.example.com; add it with `flask mailboxes add`" in result.output
    assert "Traceback" not in result.output
    assert row_counts(session)["InboundEmail"] == 0


@pytest.mark.parametrize("layout", [[], ["new"], ["cur"], ["inbox/x.eml"]], ids=["empty", "new-only", "cur-only",
                                                                                  "eml-folder"])
def test_a_folder_that_is_not_a_maildir_is_a_clear_error(runner, session, world, tmp_path, layout):
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in layout:
        if name.endswith(".eml"):
            (folder / name).parent.mkdir(parents=True)
            (folder / name).write_bytes(bytes(mail("Hello", message_id="<f1@customer.example.com>")))
        else:
            (folder / name).mkdir()

    result = intake_file(runner, folder)

    assert result.exit_code == 1, result.output
    assert f"Error: {folder} is a folder but not a Maildir" in result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    assert row_counts(session)["InboundEmail"] == 0


def test_a_bad_folder_after_good_files_imports_nothing(runner, session, world, tmp_path):
    good = tmp_path / "good.eml"
    good.write_bytes(bytes(mail("Hello", message_id="<g1@customer.example.com>")))
    (tmp_path / "folder").mkdir()

    result = intake_file(runner, good, tmp_path / "folder")

    assert result.exit_code == 1 and "is a folder but not a Maildir" in result.output
    assert row_counts(session)["InboundEmail"] == 0


def test_a_missing_path_is_a_clear_error(runner, tmp_path):
    result = intake_file(runner, tmp_path / "nope.eml")

    assert result.exit_code == 2 and "does not exist" in result.output


def test_empty_and_garbage_files_are_quarantined(runner, session, world, tmp_path):
    (tmp_path / "empty.eml").write_bytes(b"")
    (tmp_path / "garbage.eml").write_bytes((CORPUS / "garbage_bytes.eml").read_bytes())

    assert summary(intake_file(runner, tmp_path / "empty.eml", tmp_path / "garbage.eml")) == (2, 0, 0, 0, 2)
    assert [row.reason for row in session.scalars(sa.select(InboundEmail).order_by(InboundEmail.id))] == \
        ["unparseable", "unparseable"]


def test_the_whole_corpus_imports_without_crashing(runner, session, world):
    paths = sorted(CORPUS.glob("*.eml"))

    total, new, followups, duplicates, quarantined = summary(intake_file(runner, *paths))

    assert total == len(paths) and new + followups + duplicates + quarantined == total
    assert new >= 10 and quarantined >= 5
    assert "received" not in statuses(session)


def test_commits_in_batches_and_counts_more_than_a_batch(runner, session, world, tmp_path):
    box = mailbox.mbox(str(tmp_path / "big.mbox"))
    for n in range(230):
        box.add(bytes(mail(f"Request {n}", message_id=f"<b{n}@customer.example.com>",
                           sender=f"user{n}@customer.example.com")))
    box.close()

    assert summary(intake_file(runner, tmp_path / "big.mbox")) == (230, 230, 0, 0, 0)
    assert row_counts(session)["WorkItem"] == 230


def test_configuration_is_read_once_per_batch_not_per_message(app, runner, session, world, tmp_path):
    """The per-import cache: rules, policies and mailboxes are queried once per transaction."""
    session.add(RoutingRule(name="Urgent", position=1, keywords=["urgent"], set_priority="urgent"))
    session.commit()
    box = mailbox.mbox(str(tmp_path / "some.mbox"))
    for n in range(20):
        box.add(bytes(mail(f"Request {n}{' URGENT' if n % 2 else ''}", message_id=f"<c{n}@customer.example.com>",
                           sender=f"user{n}@customer.example.com", to=RETURNS if n % 3 else DESK)))
    box.close()
    selects = Counter()

    def count(conn, cursor, statement, *args):
        match = re.match(r"\s*SELECT .*?\sFROM (\w+)", statement, re.DOTALL)
        if match:
            selects[match.group(1)] += 1

    sa.event.listen(_db.engine, "before_cursor_execute", count)
    try:
        assert summary(intake_file(runner, tmp_path / "some.mbox")) == (20, 20, 0, 0, 0)
    finally:
        sa.event.remove(_db.engine, "before_cursor_execute", count)

    assert (selects["routing_rules"], selects["sla_policies"], selects["mailboxes"]) == (1, 1, 1), selects
    items = session.scalars(sa.select(WorkItem).order_by(WorkItem.id)).all()
    assert [i.priority for i in items] == [("urgent" if n % 2 else ("high" if n % 3 else "normal"))
                                           for n in range(20)]
    assert [i.team.name for i in items] == [("Returns" if n % 3 else "Support") for n in range(20)]
    assert "backdesk_config_cache" not in session.info  # nothing cached once the import is over


def test_a_rule_added_between_imports_is_used_by_the_next_one(runner, session, world, tmp_path):
    first, second = tmp_path / "1.eml", tmp_path / "2.eml"
    first.write_bytes(bytes(mail("Refund please", message_id="<r1@customer.example.com>")))
    second.write_bytes(bytes(mail("Refund please", message_id="<r2@customer.example.com>")))
    assert summary(intake_file(runner, first)) == (1, 1, 0, 0, 0)
    returns = session.scalar(sa.select(Mailbox).where(Mailbox.address == RETURNS)).team
    session.add(RoutingRule(name="Refunds", position=1, keywords=["refund"], set_type="return",
                            set_team_id=returns.id))
    session.commit()

    assert summary(intake_file(runner, second)) == (1, 1, 0, 0, 0)
    items = session.scalars(sa.select(WorkItem).order_by(WorkItem.id)).all()
    assert [(i.type, i.team.name) for i in items] == [("general", "Support"), ("return", "Returns")]


# --- mailboxes add | list -------------------------------------------------------------------

def test_mailboxes_add_and_list(runner, session, world):
    result = runner.invoke(args=["mailboxes", "add", "Docs@Backdesk.example.com", "--type", "document_verification",
                                 "--team", "Support", "--priority", "high"])

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "added docs@backdesk.example.com: document_verification for Support, priority high"
    listing = runner.invoke(args=["mailboxes", "list"]).output.splitlines()
    assert [line.split()[0] for line in listing] == ["desk@backdesk.example.com", "docs@backdesk.example.com",
                                                    "returns@backdesk.example.com"]
    assert listing[1].split()[1:] == ["document_verification", "Support", "high"]


@pytest.mark.parametrize("args, message", [
    (["x@backdesk.example.com", "--team", "Nowhere"], "invalid mailbox (team: no team named 'Nowhere')"),
    (["x@backdesk.example.com", "--team", "Support", "--type", "bogus"], "invalid mailbox (type: must be one of"),
    ([DESK, "--team", "Support"], f"a mailbox {DESK} exists already"),
])
def test_mailboxes_add_refuses_bad_input(runner, session, world, args, message):
    result = runner.invoke(args=["mailboxes", "add", *args])

    assert result.exit_code == 1 and message in result.output
    assert row_counts(session) and session.scalar(sa.select(sa.func.count()).select_from(Mailbox)) == 2
