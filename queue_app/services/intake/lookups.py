"""What filing an email reads of the messages and items we already have: the message with a
Message-ID, the item a thread or a [BO-…] tag leads to, and who takes part in an item.

DatabaseLookups asks the database per question (one message at a time); BatchLookups answers
the same questions for a whole batch of the bulk import from a few queries made up front, kept
current as the batch queues its rows, so every message sees exactly what it would have seen.
"""
from itertools import islice

import sqlalchemy as sa

from queue_app.models import Message, WorkItem
from queue_app.services.intake.mail.headers import extract_ref_tag
from queue_app.services.intake.mail.parser import ParsedEmail


class DatabaseLookups:
    """What filing a message reads of the messages and items we have, a query per question
    (`BatchLookups` answers the same questions for a whole batch of the bulk import)."""

    def __init__(self, session):
        self.session = session

    def seen(self, message_id):
        """(kind, item) of the message we already have with this Message-ID, or None."""
        message = self.session.scalar(sa.select(Message).where(Message.message_id == message_id))
        return (message.kind, message.work_item) if message is not None else None

    def latest_item(self, keys):
        """The item of the newest message with one of these Message-IDs, or None."""
        message = self.session.scalar(sa.select(Message).where(Message.message_id.in_(keys))
                                      .order_by(Message.id.desc()).limit(1))
        return message.work_item if message is not None else None

    def item_by_ref(self, ref):
        return self.session.scalar(sa.select(WorkItem).where(WorkItem.ref == ref))

    def answered_by(self, message_id):
        """The item of the first email filed that answers this Message-ID (In-Reply-To), or None:
        the email being filed is a parent that arrived after its reply."""
        message = self.session.scalar(sa.select(Message).where(Message.in_reply_to == message_id,
                                                               Message.kind == "inbound")
                                      .order_by(Message.id).limit(1))
        return message.work_item if message is not None else None

    def made_item(self, item):
        pass  # the database answers for it once its row is written (before any read of the table)

    def wrote_message(self, values):
        pass  # likewise

    def participants(self, item):
        """The requester and everyone on the item's mail, except messages flagged for review."""
        people = {item.requester_email.lower()} if item.requester_email else set()
        for row in self.session.execute(
                sa.select(Message.from_address, Message.to_addresses, Message.cc_addresses)
                .where(Message.work_item_id == item.id, Message.flagged_for_review.is_(False))):
            people.update(addresses_in(*row))
        return people


def addresses_in(*values):
    """The lower-case addresses in comma-separated address columns."""
    return {a.strip().lower() for value in values for a in (value or "").split(",") if a.strip()}


class BatchLookups:
    """The reads that filing a batch makes, done for the whole batch up front in a few queries
    and kept current as the batch writes: the messages we have under the Message-IDs the
    batch mentions, the items those and its [BO-…] tags lead to, and who takes part in them.

    Filing one message at a time asks the database for each of these; here every message
    of the batch sees exactly what it would have seen there, as the rows the batch writes
    (messages, new items) are added as they are queued.
    """

    CHUNK = 500  # values per IN (...) list

    def __init__(self, session, parsed, attach):
        self.session = session
        self.attach = attach  # QueuedItem -> its WorkItem attached to the session (Batched.attach)
        self.messages = {}  # Message-ID -> (message id, item id, kind)
        self.answers = {}  # Message-ID -> (message id, item id) of the first inbound email answering it
        self.items, self.refs, self.people = {}, {}, {}
        self.asked_ids, self.asked_refs = set(), set()
        keys, refs, own = set(), set(), set()
        for p in parsed:
            if isinstance(p, ParsedEmail):  # not the error to quarantine with, nor None
                keys.update(k for k in (p.message_id, *p.in_reply_to, *p.references, *p.bounced_message_ids) if k)
                ref = extract_ref_tag(p.subject)
                if ref:
                    refs.add(ref)
                if p.message_id:
                    own.add(p.message_id)
        self._fetch(keys, refs, own)

    def _fetch(self, keys, refs=(), own=()):
        """Read what the database has for these Message-IDs and refs (once per value), and the
        emails that answer the batch's own Message-IDs (`own`, asked once, up front)."""
        keys, refs = set(keys) - self.asked_ids, set(refs) - self.asked_refs
        if not keys and not refs and not own:
            return
        self.asked_ids.update(keys)
        self.asked_refs.update(refs)
        item_ids = set()
        for chunk in chunks(sorted(keys), self.CHUNK):
            for message_id, row_id, item_id, kind in self.session.execute(
                    sa.select(Message.message_id, Message.id, Message.work_item_id, Message.kind)
                    .where(Message.message_id.in_(chunk))):
                self.messages[message_id] = (row_id, item_id, kind)
                item_ids.add(item_id)
        for chunk in chunks(sorted(own), self.CHUNK):
            for answered, row_id, item_id in self.session.execute(
                    sa.select(Message.in_reply_to, Message.id, Message.work_item_id)
                    .where(Message.in_reply_to.in_(chunk), Message.kind == "inbound")):
                if answered not in self.answers or row_id < self.answers[answered][0]:
                    self.answers[answered] = (row_id, item_id)
                item_ids.add(item_id)
        item_ids = sorted(item_ids - set(self.items))
        loaded = []
        for column, values in ((WorkItem.id, item_ids), (WorkItem.ref, sorted(refs - set(self.refs)))):
            for chunk in chunks(values, self.CHUNK):
                # Afresh, even if the session holds the item from an earlier batch (services.intake.filer).
                loaded += self.session.scalars(sa.select(WorkItem).where(column.in_(chunk))
                                               .execution_options(populate_existing=True)).all()
        for item in loaded:
            self._add_item(item)
        for chunk in chunks(sorted(item.id for item in loaded), self.CHUNK):  # who takes part in them
            for item_id, *addresses in self.session.execute(
                    sa.select(Message.work_item_id, Message.from_address, Message.to_addresses, Message.cc_addresses)
                    .where(Message.work_item_id.in_(chunk), Message.flagged_for_review.is_(False))):
                self.people[item_id].update(addresses_in(*addresses))

    def _add_item(self, item):
        self.items[item.id] = item  # held here: the session's identity map keeps no strong reference
        self.refs[item.ref] = item.id
        self.people[item.id] = {item.requester_email.lower()} if item.requester_email else set()

    def _work_item(self, item_id):
        """The WorkItem to change: an item made in this batch is a QueuedItem until it is loaded."""
        item = self.items[item_id]
        if not isinstance(item, WorkItem):
            item = self.items[item_id] = self.attach(item)
        return item

    def seen(self, message_id):
        self._fetch([message_id])
        found = self.messages.get(message_id)
        return (found[2], self.items[found[1]]) if found else None

    def latest_item(self, keys):
        self._fetch(keys)
        found = [self.messages[k] for k in keys if k in self.messages]
        return self._work_item(max(found)[1]) if found else None

    def item_by_ref(self, ref):
        self._fetch((), [ref])
        return self._work_item(self.refs[ref]) if ref in self.refs else None

    def answered_by(self, message_id):
        found = self.answers.get(message_id)
        if found is None:
            return None
        return self._work_item(found[1])

    def participants(self, item):
        return set(self.people[item.id])

    def made_item(self, item):
        self._add_item(item)
        self.asked_refs.add(item.ref)

    def wrote_message(self, values):
        if values.get("message_id"):
            self.messages[values["message_id"]] = (values["id"], values["work_item_id"], values["kind"])
        if values.get("in_reply_to") and values["kind"] == "inbound":
            self.answers.setdefault(values["in_reply_to"], (values["id"], values["work_item_id"]))
        if not values.get("flagged_for_review") and values["work_item_id"] in self.people:
            self.people[values["work_item_id"]].update(
                addresses_in(values.get("from_address"), values.get("to_addresses"), values.get("cc_addresses")))


def chunks(iterable, size):
    iterator = iter(iterable)
    while chunk := list(islice(iterator, size)):
        yield chunk
