"""How filing an email writes what it decided: one message at a time through the ORM, or a bulk
import's batch as rows queued for one INSERT per table.

The filing rules (services.intake.filing) are written once and take a writer:
- `OneAtATime`: ORM objects, flushed after each message so a failure shows at the message that
  caused it; reads through DatabaseLookups; the acknowledgement cap is a query.
- `Batched` (the bulk import, inside db.batched_rows): a batch's messages, attachments and the
  new items of teams that assign by hand are rows with ids taken beforehand, written in
  foreign-key order before anything reads their tables or the batch commits; reads through the
  batch's BatchLookups, kept current as rows are queued; the acknowledgement cap is counted.
  A failed batch is undone (`mark`/`undo`) and filed again one message at a time.
Both write the same rows in the same order, with the settings read once per writer.
"""
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import make_transient_to_detached

from queue_app.db import batched_rows, config_cache
from queue_app.models import Attachment, Message, WorkItem
from queue_app.models.work_item import format_ref
from queue_app.services.intake.lookups import DatabaseLookups
from queue_app.services.items import lifecycle
from queue_app.services.sla import policies
from queue_app.settings import IntakeSettings, MailSettings


class OneAtATime:
    """The ORM writer: what the SMTP server, the IMAP poller, the intake job and a retry use."""

    def __init__(self, session):
        self.session = session
        self.lookups = DatabaseLookups(session)
        self.intake = IntakeSettings.current()
        self.mail = MailSettings.current()

    def add_item(self, new):
        return lifecycle.add_item(self.session, new)

    def add_message(self, values, attachments, item):
        session = self.session
        message = Message(**values)
        session.add(message)
        session.flush()
        for row in attachments:
            session.add(Attachment(message_id=message.id, **row))
        if attachments:
            session.flush()
            if any(row["is_inline"] for row in attachments):
                message.body_html = link_inline_images(message.body_html, message.attachments, item)
        return message

    def flush(self):
        """Flush now, so a failure shows at the message that caused it."""
        self.session.flush()

    def acks_in_last_hour(self, sender, now):
        return self.session.scalar(sa.select(sa.func.count()).select_from(Message).where(
            Message.is_automatic.is_(True), Message.to_addresses == sender,
            Message.created_at > now - timedelta(hours=1)))

    def acknowledged(self, sender, now):
        pass  # the next count reads it from the database


class Batched:
    """The bulk import's writer (`with Batched(session) as writer:`). Between messages it keeps the
    acknowledgements sent per sender in the last hour (read once, then counted) and the batch's
    lookups (`start_batch`)."""

    def __init__(self, session):
        self.session = session
        self.lookups = None  # the batch being written: its BatchLookups
        self.intake = IntakeSettings.current()
        self.mail = MailSettings.current()
        self.acks = None  # sender -> [sent at], loaded on first use
        self.log = []  # senders acknowledged by this import, in order, to undo a failed batch
        self.attached = []  # WorkItems attached to the session from queued rows in this transaction

    def __enter__(self):
        sa.event.listen(self.session, "after_commit", self._committed)
        sa.event.listen(self.session, "after_soft_rollback", self._rolled_back)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.session, "after_commit", self._committed)
        sa.event.remove(self.session, "after_soft_rollback", self._rolled_back)

    def _committed(self, session):
        self.attached.clear()

    def _rolled_back(self, session, previous_transaction):
        """Items attached in the transaction are not "new" to the session, so a rollback would leave
        them in the identity map under ids that no longer exist (and may be given again)."""
        if previous_transaction.parent is not None:  # a savepoint: the outer transaction still holds them
            return
        for item in self.attached:
            if item in session:
                session.expunge(item)
        self.attached.clear()

    def start_batch(self, lookups):
        self.lookups = lookups

    def end_batch(self):
        self.lookups = None

    def add_item(self, new):
        """A new item of a team that assigns by hand is a queued row (QueuedItem); any other goes
        through the ORM, as auto-assignment needs the WorkItem."""
        if new.assignee is None and new.team.auto_assign == "manual":
            item = self._queue_item(new)
        else:
            item = lifecycle.add_item(self.session, new)
        self.lookups.made_item(item)
        return item

    def _queue_item(self, new):
        """The same item, events and jobs as lifecycle.add_item, in the same order, but the item is a
        row queued for the batch's INSERT (its id taken beforehand, its ref and SLA columns already
        set): the ORM's bookkeeping for a new WorkItem costs more than everything else intake does
        with it. To change the item later in the transaction, `attach` it."""
        session = self.session
        item_id = batched_rows.new_id(session, WorkItem.__table__)
        row = {**new.columns, "id": item_id, "ref": format_ref(item_id), "sla_state": "on_track", "sla_version": 0,
               "sla_paused_minutes": 0.0, "first_response_stage": 0, "resolution_stage": 0,
               "escalation_level": 0, "needs_attention": False, "version": 1}
        item = QueuedItem(new.team, row)
        lifecycle.record_creation(session, item, new)
        policies.start_clock(session, item, new.now, new.actor)
        lifecycle.enqueue_checks(session, item)
        batched_rows.add_row(session, WorkItem, {**row, **{c: getattr(item, c) for c in _SLA_COLUMNS}})
        return item

    def add_message(self, values, attachments, item):
        """The message and its attachments as rows queued for the batch's INSERTs, ids taken beforehand."""
        session = self.session
        values["id"] = batched_rows.new_id(session, Message.__table__)
        for row in attachments:
            row["message_id"] = values["id"]
            row["id"] = batched_rows.new_id(session, Attachment.__table__)
        if any(row["is_inline"] for row in attachments):
            values["body_html"] = link_inline_images(values["body_html"], [Row(**row) for row in attachments], item)
        batched_rows.add_row(session, Message, values)
        for row in attachments:
            batched_rows.add_row(session, Attachment, row)
        self.lookups.wrote_message(values)
        return Row(**values)

    def flush(self):
        pass  # the batch's commit writes it (a failed batch is filed again one message at a time)

    def acks_in_last_hour(self, sender, now):
        if self.acks is None:
            self.acks = {}
            for to_address, created_at in self.session.execute(
                    sa.select(Message.to_addresses, Message.created_at).where(
                        Message.is_automatic.is_(True), Message.created_at > now - timedelta(hours=1))):
                self.acks.setdefault(to_address, []).append(created_at)
        since = now - timedelta(hours=1)
        return sum(1 for at in self.acks.get(sender, ()) if at > since)

    def acknowledged(self, sender, now):
        if self.acks is not None:
            self.acks.setdefault(sender, []).append(now)
            self.log.append(sender)

    def attach(self, queued):
        """The WorkItem of a QueuedItem, attached to the session as the persistent object of its row
        without reading it back (its changes are flushed after the queued rows are written)."""
        item = attach_queued_item(self.session, queued)
        self.attached.append(item)  # dropped again if the transaction rolls back
        return item

    def mark(self):
        return len(self.log)

    def roll_back(self, position):
        """Roll the transaction back and forget what it counted and cached since `mark`."""
        self.session.rollback()
        self.undo(position)
        config_cache.reset(self.session)

    def undo(self, position):
        """After a rollback: forget the acknowledgements counted since `mark`."""
        for sender in reversed(self.log[position:]):
            self.acks[sender].pop()
        del self.log[position:]


class Row:
    """The values of a row written without an ORM object (bulk import), as attributes."""

    def __init__(self, **values):
        self.__dict__.update(values)


def link_inline_images(html, attachments, item):
    """Point `cid:` images at our own attachment URLs (the parser left them as cid: for us)."""
    html = html or ""
    for attachment in attachments:
        if attachment.content_id:
            html = html.replace(f'src="cid:{attachment.content_id}"',
                                f'src="/items/{item.ref}/attachments/{attachment.id}/inline"')
    return html


# Columns start_clock sets on a new item.
_SLA_COLUMNS = ("sla_policy_id", "first_response_due", "resolution_due", "sla_next_due", "sla_state", "sla_paused_at",
                "sla_version", "sla_next_check_at")


class QueuedItem:
    """A new work item whose row is queued for a bulk INSERT: every column as a plain attribute
    (those not given are None), its team and SLA policy, and WorkItem's `is_open`."""

    is_open = WorkItem.is_open

    def __init__(self, team, row):
        self.__dict__.update(dict.fromkeys(WorkItem.__table__.columns.keys()), **row)
        self.team = team
        self.sla_policy = None
        self.assignee = None

    def __repr__(self):
        return f"<QueuedItem {self.ref} {self.type} {self.status}>"


def attach_queued_item(session, queued):
    """The WorkItem of a QueuedItem as the persistent object of its row, without reading it back."""
    columns = WorkItem.__table__.columns.keys()
    item = WorkItem(**{c: getattr(queued, c) for c in columns}, team=queued.team, sla_policy=queued.sla_policy)
    make_transient_to_detached(item)
    session.add(item)
    return item
