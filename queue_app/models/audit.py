"""The audit trail beyond work items: configuration changes and security events, and the hash
chain that seals them together with the items' events (models.event).

- ConfigChange (`audit_entries`): who changed which setting when, with the values before and
  after (secrets masked). Written only by services.audit.record.
- AuditSeal (`audit_seals`): an entry's place in the one chain of the whole trail, item events
  and configuration changes together: its position, which entry it is and the hash linking it
  to the entry before. Written only by services.audit.chain, which also keeps
- AuditChainHead (`audit_chain_head`): one row, the chain's last position and hash and how far
  each table has been sealed; the sealers lock it (see services.audit.chain).
"""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from queue_app.models.base import db, utcnow

# The tables whose rows the chain seals, as AuditSeal.entry_table names them.
SEALED_TABLES = ("events", "audit_entries")


class ConfigChange(db.Model):
    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    actor_label: Mapped[str] = mapped_column(sa.String(255))  # "ada@example.com", "cli:root", "system"
    action: Mapped[str] = mapped_column(sa.String(40))  # created | updated | deleted | sign_in | sign_in_failed | ...
    object_type: Mapped[str] = mapped_column(sa.String(40))  # user, team, checker, sla_policy, ...
    object_id: Mapped[Optional[int]]
    object_label: Mapped[str] = mapped_column(sa.String(255))
    before: Mapped[Optional[dict]] = mapped_column(sa.JSON)
    after: Mapped[Optional[dict]] = mapped_column(sa.JSON)

    __table_args__ = (
        sa.Index("ix_audit_entries_at", "at"),
        sa.Index("ix_audit_entries_object_type_id", "object_type", "id"),
    )


class AuditSeal(db.Model):
    __tablename__ = "audit_seals"

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)  # the position in the chain, from 1
    entry_table: Mapped[str] = mapped_column(sa.String(20))  # one of SEALED_TABLES
    entry_id: Mapped[int]
    hash: Mapped[str] = mapped_column(sa.String(64))  # sha256 hex of the previous hash and the entry

    __table_args__ = (sa.UniqueConstraint("entry_table", "entry_id"),)


class AuditChainHead(db.Model):
    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)  # always 1
    last_seq: Mapped[int] = mapped_column(default=0)
    last_hash: Mapped[str] = mapped_column(sa.String(64))
    events_sealed_to: Mapped[int] = mapped_column(default=0)  # the highest events.id sealed
    changes_sealed_to: Mapped[int] = mapped_column(default=0)  # the highest audit_entries.id sealed
    sealed_at: Mapped[Optional[datetime]]

    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)
