"""Every email that reached us, raw bytes first: the record that nothing was lost.

A row is written (and committed) before the sender gets its 250 or the IMAP message is
marked seen; processing then turns it into an item, a follow-up, a duplicate or a
quarantined message, with the reason.
"""
from datetime import datetime
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, one_of, utcnow

if TYPE_CHECKING:
    from queue_app.models import Mailbox, WorkItem

INBOUND_STATUSES = ("received", "created", "followup", "duplicate", "quarantined", "discarded")


class InboundEmail(db.Model):
    __tablename__ = "inbound_emails"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(16))  # smtp | imap | file
    mailbox_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("mailboxes.id", ondelete="SET NULL"))
    envelope_from: Mapped[Optional[str]] = mapped_column(sa.String(255))
    envelope_to: Mapped[list] = mapped_column(sa.JSON, default=list)
    message_id: Mapped[Optional[str]] = mapped_column(sa.String(998), index=True)
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    size: Mapped[int]
    raw: Mapped[Optional[bytes]] = mapped_column(sa.LargeBinary)  # None only for a duplicate (kept once)
    imap_uid: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.String(16), default="received")
    reason: Mapped[Optional[str]] = mapped_column(sa.String(64))
    detail: Mapped[Optional[str]] = mapped_column(sa.Text)
    work_item_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("work_items.id", ondelete="SET NULL"))
    duplicate_of_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("inbound_emails.id"))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[Optional[datetime]]

    mailbox: Mapped[Optional["Mailbox"]] = relationship()
    work_item: Mapped[Optional["WorkItem"]] = relationship()

    __table_args__ = (
        sa.Index("ix_inbound_emails_status_received", "status", "received_at"),
        sa.Index("ix_inbound_emails_mailbox_uid", "mailbox_id", "imap_uid"),
        one_of("status", INBOUND_STATUSES),
    )
