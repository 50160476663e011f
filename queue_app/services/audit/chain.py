"""The tamper-evident chain over the whole audit trail: item events (`events`) and
configuration changes and security events (`audit_entries`), in one chain.

Design: entries are written as before, without a hash, so writers stay as fast as they were
(the bulk import writes thousands of events per batch) and never wait for each other. A
*sealer* later links the committed entries: under the chain's lock it takes the entries of
each table above the last one sealed, in id order, interleaves the two tables by time (each
table keeping its id order), and gives each the next position in the chain with

    hash = sha256(previous hash + canonical text of the entry)

where the canonical text is the JSON array [table, position, id, then the entry's fields in the
order of TABLES], without spaces, ASCII only, times as whole microseconds since 1970-01-01 UTC
and JSON columns as the text the database stores (the first entry's previous hash is 64
zeros), kept in `audit_seals`; the single row of `audit_chain_head` keeps the last position
and hash and how far each table is sealed. The lock (db.sealing) makes "in id order" safe:
the sealer only runs when no transaction that writes entries is in flight, so an entry can
never commit below an id already sealed. The sealer runs with every commit that wrote
entries (SQLite: just before it, inside that transaction, which holds the write lock anyway;
PostgreSQL: just after it, in a transaction of its own), every AUDIT_SEAL_SECONDS in the
scheduler, on `flask audit seal` and from the admin page. Sealing is idempotent and never
changes an entry. (Hashing at insert time instead would make every writer wait for the one
before it to commit, and put the hashing in the middle of the bulk import's batches.)

`verify` walks the chain from the start and recomputes every hash. It reports, naming the table
and id: an entry edited since it was sealed (its hash no longer matches), an entry deleted
(its seal is left without it), positions missing (entries deleted with their seals), entries
reordered, a chain that stops short of its head (the last entries deleted), and an entry that
is not in the chain although its id is below the last one sealed of its table (inserted out
of order: the sealer would never leave one behind). Entries above the last sealed id are
merely not sealed yet; they are counted apart, and are not a failure.

What the chain proves: no sealed entry was edited, deleted, inserted or reordered since it
was sealed, unless whoever did it also rewrote every seal from that point on and the head
(anyone with write access to the database can recompute sha256, there is no secret key). So
export the head (position and hash, on the audit page and in `flask audit seal|verify`)
regularly to somewhere the database's users cannot write, and compare: a rewritten chain
then no longer ends in a head that was exported. What it does not prove: that an entry was
written at all (code or a person that changes a table without writing an entry leaves no
trace), that its time or contents were true when written, nor anything about entries not yet
sealed (they can be changed or removed unnoticed until the sealer links them: on SQLite at
their commit, on PostgreSQL normally right after it).
"""
import hashlib
import heapq
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from queue_app.db import sealing
from queue_app.db.batched_rows import insert_tuples
from queue_app.models import AuditChainHead, AuditSeal, ConfigChange, Event
from queue_app.models.base import utcnow

GENESIS = "0" * 64
SEAL_BATCH = 5000
MAX_PROBLEMS = 20
_HEAD = AuditChainHead.__table__
_SEALS = AuditSeal.__table__

# table name -> (table, the fields its hash covers besides the id, the head's column of the last id sealed)
TABLES = {
    "events": (Event.__table__, ("work_item_id", "kind", "actor_id", "actor_label", "at", "data"),
               "events_sealed_to"),
    "audit_entries": (ConfigChange.__table__, ("at", "actor_id", "actor_label", "action", "object_type",
                                               "object_id", "object_label", "before", "after"),
                      "changes_sealed_to"),
}
_STRING = json.encoder.encode_basestring_ascii  # a str as a JSON string, ASCII only
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
CHAIN_TABLES = (_SEALS.name, _HEAD.name, ConfigChange.__table__.name)


def entry_columns(table_name):
    """The columns an entry's hash covers, as `canonical` reads them: JSON columns as their stored text."""
    table, fields, _ = TABLES[table_name]
    return [table.c.id] + [sa.cast(table.c[name], sa.Text).label(name) if isinstance(table.c[name].type, sa.JSON)
                           else table.c[name] for name in fields]


def _json(value):
    if value is None:
        return "null"
    if isinstance(value, str):
        return _STRING(value)
    if isinstance(value, datetime):
        return str((value - _EPOCH) // _MICROSECOND)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _STRING(str(value))


def canonical(table_name, seq, row):
    """The text an entry's hash covers (row: as read with entry_columns): a JSON array, no spaces."""
    return f'["{table_name}",{seq},' + ",".join(map(_json, row)) + "]"


def entry_hash(previous, table_name, seq, row):
    return hashlib.sha256((previous + canonical(table_name, seq, row)).encode()).hexdigest()


def missing_tables(session):
    """The chain's tables this database lacks (before `flask db upgrade`), in a sentence's order."""
    inspector = sa.inspect(session.get_bind())
    return [name for name in CHAIN_TABLES if not inspector.has_table(name)]


# --- sealing -------------------------------------------------------------------------------------

@dataclass
class Sealed:
    count: int  # entries sealed now
    busy: bool  # a writer was in flight (PostgreSQL): nothing was sealed, try again later
    head_seq: int = 0
    head_hash: str = GENESIS


def _head_for_update(session):
    """The head row, locked for this transaction (created on first use). On SQLite the INSERT is
    the transaction's first write, which waits for any writer in flight and keeps others out."""
    values = dict(id=1, last_seq=0, last_hash=GENESIS, events_sealed_to=0, changes_sealed_to=0)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(_HEAD).values(**values).on_conflict_do_nothing(index_elements=["id"]))
    return session.execute(sa.select(_HEAD).where(_HEAD.c.id == 1).with_for_update()).one()


def seal(session, *, limit=SEAL_BATCH, now=None):
    """Link the committed entries not yet in the chain (up to `limit` of each table); the caller commits.

    Returns Sealed; `busy` when a writer was in flight on PostgreSQL (nothing done; a later seal will)."""
    if not sealing.try_exclusive(session):
        return Sealed(0, True)
    head = _head_for_update(session)
    last = {name: getattr(head, sealed_to) for name, (_, _, sealed_to) in TABLES.items()}
    pending = []
    for name, (table, _, _) in TABLES.items():
        rows = session.execute(sa.select(*entry_columns(name)).where(table.c.id > last[name])
                               .order_by(table.c.id).limit(limit)).all()
        if rows:
            pending.append([(name, row) for row in rows])
            last[name] = rows[-1].id
    if not pending:
        return Sealed(0, False, head.last_seq, head.last_hash)
    # Interleaved by time; heapq.merge keeps each table's id order whatever the times say.
    ordered = pending[0] if len(pending) == 1 else heapq.merge(*pending, key=lambda entry: entry[1].at)
    seq, previous, seals, sha256 = head.last_seq, head.last_hash, [], hashlib.sha256
    for name, row in ordered:
        seq += 1
        previous = sha256((previous + canonical(name, seq, row)).encode()).hexdigest()  # entry_hash, inlined
        seals.append((seq, name, row.id, previous))
    insert_tuples(session, _SEALS, ("seq", "entry_table", "entry_id", "hash"), seals)
    session.execute(sa.update(_HEAD).where(_HEAD.c.id == 1).values(
        last_seq=seq, last_hash=previous, sealed_at=now or utcnow(),
        **{sealed_to: last[name] for name, (_, _, sealed_to) in TABLES.items()}))
    return Sealed(len(seals), False, seq, previous)


# --- the head, for the page ------------------------------------------------------------------------

@dataclass
class Status:
    head_seq: int
    head_hash: str
    sealed_at: Optional[datetime]
    pending: dict  # table name -> entries not yet sealed


def status(session):
    head = session.execute(sa.select(_HEAD).where(_HEAD.c.id == 1)).first()
    pending = {}
    for name, (table, _, sealed_to) in TABLES.items():
        pending[name] = session.scalar(sa.select(sa.func.count()).select_from(table)
                                       .where(table.c.id > (getattr(head, sealed_to) if head else 0)))
    if head is None:
        return Status(0, GENESIS, None, pending)
    return Status(head.last_seq, head.last_hash, head.sealed_at, pending)


# --- verifying -----------------------------------------------------------------------------------

@dataclass
class Problem:
    kind: str  # edited | deleted | missing | reordered | inserted | head
    message: str
    table: Optional[str] = None
    entry_id: Optional[int] = None
    seq: Optional[int] = None


@dataclass
class Verification:
    sealed: int = 0  # entries walked in the chain
    head_seq: int = 0
    head_hash: str = GENESIS
    pending: dict = field(default_factory=dict)  # table name -> entries not yet sealed (no failure)
    problems: list = field(default_factory=list)  # the first MAX_PROBLEMS, first in chain order
    more_problems: bool = False

    @property
    def ok(self):
        return not self.problems

    def add(self, problem):
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.more_problems = True


def _name(table, entry_id, seq=None):
    return f"{table} #{entry_id}" + (f" (chain position {seq})" if seq is not None else "")


def verify(session, *, chunk=2000):
    """Walk the chain from its start, recompute every hash and compare; see the module's docstring."""
    result = Verification()
    head = session.execute(sa.select(_HEAD).where(_HEAD.c.id == 1)).first()
    max_seq = session.scalar(sa.select(sa.func.max(_SEALS.c.seq))) or 0
    if head is None and max_seq:
        result.add(Problem("head", "the chain's head row is missing (audit_chain_head was emptied)"))
    end = head.last_seq if head is not None else max_seq
    result.head_seq, result.head_hash = end, head.last_hash if head is not None else GENESIS

    previous, expected, after = GENESIS, 1, 0
    last_ids = dict.fromkeys(TABLES, 0)
    last_entry = None  # (table, id) of the entry at the previous position
    while after < end:
        seals = session.execute(sa.select(_SEALS).where(_SEALS.c.seq > after, _SEALS.c.seq <= end)
                                .order_by(_SEALS.c.seq).limit(chunk)).all()
        if not seals:
            break
        rows = {}
        for name, (table, _, _) in TABLES.items():
            ids = [s.entry_id for s in seals if s.entry_table == name]
            rows[name] = {row.id: row for row in session.execute(
                sa.select(*entry_columns(name)).where(table.c.id.in_(ids)))} if ids else {}
        for s in seals:
            gap = s.seq != expected
            if gap:
                where = f"after {_name(*last_entry)}" if last_entry else "at the start"
                result.add(Problem("missing", f"chain positions {expected} to {s.seq - 1} are missing {where}: "
                                              "sealed entries were deleted together with their seals",
                                   seq=expected))
            name = s.entry_table
            if name not in TABLES:
                result.add(Problem("head", f"chain position {s.seq} names an unknown table {name!r}", seq=s.seq))
            else:
                row = rows[name].get(s.entry_id)
                if s.entry_id <= last_ids[name]:
                    result.add(Problem("reordered", f"{_name(name, s.entry_id, s.seq)} comes after {name} "
                                                    f"#{last_ids[name]} in the chain: the chain was reordered",
                                       name, s.entry_id, s.seq))
                elif row is None:
                    result.add(Problem("deleted", f"{_name(name, s.entry_id, s.seq)} was deleted after it was sealed",
                                       name, s.entry_id, s.seq))
                elif not gap and entry_hash(previous, name, s.seq, row) != s.hash:
                    result.add(Problem("edited", f"{_name(name, s.entry_id, s.seq)} was edited after it was sealed: "
                                                 "its contents no longer match its seal", name, s.entry_id, s.seq))
                last_ids[name] = max(last_ids[name], s.entry_id)
                last_entry = (name, s.entry_id)
            previous, expected, after = s.hash, s.seq + 1, s.seq
            result.sealed += 1

    if expected - 1 != end:
        where = f" (the last one left is {_name(*last_entry)})" if last_entry else ""
        result.add(Problem("deleted", f"the chain stops at position {expected - 1} but its head is at {end}: "
                                      f"the last sealed entries were deleted with their seals{where}",
                           seq=expected))
    elif head is not None and previous != head.last_hash:
        result.add(Problem("head", f"the last seal (position {end}) does not match the chain's head hash"
                                   f"{' (' + _name(*last_entry) + ')' if last_entry else ''}", seq=end))
    if head is not None:
        for name, (_, _, sealed_to) in TABLES.items():
            if getattr(head, sealed_to) != last_ids[name]:
                result.add(Problem("head", f"the head says {name} are sealed up to #{getattr(head, sealed_to)}, "
                                           f"but the chain's last {name} entry is #{last_ids[name]}", name))
    _unsealed(session, head, result)
    # Seals past the head (read after it: a seal committed meanwhile moved the head too).
    beyond = session.scalar(sa.select(sa.func.max(_SEALS.c.seq))) or 0
    head_now = session.scalar(sa.select(_HEAD.c.last_seq).where(_HEAD.c.id == 1))
    if head_now is not None and beyond > head_now:
        result.add(Problem("head", f"there are seals beyond the chain's head (up to position {beyond}, "
                                   f"head at {head_now}): seals were added by hand", seq=head_now + 1))
    return result


def _unsealed(session, head, result):
    """Entries not in the chain: below a table's last sealed id they were inserted out of order,
    above it they are waiting for the sealer."""
    for name, (table, _, sealed_to) in TABLES.items():
        sealed_to_id = getattr(head, sealed_to) if head is not None else 0
        in_chain = sa.select(_SEALS.c.entry_id).where(_SEALS.c.entry_table == name)
        stray = session.scalars(sa.select(table.c.id).where(table.c.id <= sealed_to_id, table.c.id.not_in(in_chain))
                                .order_by(table.c.id).limit(MAX_PROBLEMS)).all()
        for entry_id in stray:
            result.add(Problem("inserted", f"{name} #{entry_id} was inserted out of order: it is not in the chain, "
                                           f"but its id is below the last sealed {name} entry (#{sealed_to_id})",
                               name, entry_id))
        result.pending[name] = session.scalar(sa.select(sa.func.count()).select_from(table)
                                              .where(table.c.id > sealed_to_id))
