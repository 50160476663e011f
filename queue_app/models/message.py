"""Messages on a work item (inbound email, outbound reply, internal note) and attachments."""
from datetime import datetime
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, one_of, utcnow

if TYPE_CHECKING:
    from queue_app.models import Blob, User, WorkItem

MESSAGE_KINDS = ("inbound", "outbound", "note")


class Message(db.Model):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    work_item_id: Mapped[int] = mapped_column(sa.ForeignKey("work_items.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    # RFC 5322 threading keys; message_id is unique across everything seen or sent.
    message_id: Mapped[Optional[str]] = mapped_column(sa.String(998), unique=True)
    in_reply_to: Mapped[Optional[str]] = mapped_column(sa.String(998))
    references: Mapped[Optional[str]] = mapped_column(sa.Text)
    from_address: Mapped[Optional[str]] = mapped_column(sa.String(255))
    to_addresses: Mapped[Optional[str]] = mapped_column(sa.Text)
    cc_addresses: Mapped[Optional[str]] = mapped_column(sa.Text)
    subject: Mapped[Optional[str]] = mapped_column(sa.String(998))
    body_text: Mapped[str] = mapped_column(sa.Text, default="")
    body_html: Mapped[Optional[str]] = mapped_column(sa.Text)  # already sanitised
    author_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    # The email this message came from (its raw bytes are kept there).
    inbound_email_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("inbound_emails.id", ondelete="SET NULL"))
    # Sent by Backdesk itself (acknowledgements), not written by a person.
    is_automatic: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    flagged_for_review: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    send_status: Mapped[Optional[str]] = mapped_column(sa.String(16))  # outbound: queued, sent, failed
    sent_at: Mapped[Optional[datetime]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    work_item: Mapped["WorkItem"] = relationship(back_populates="messages")
    author: Mapped[Optional["User"]] = relationship()
    attachments: Mapped[list["Attachment"]] = relationship(back_populates="message", order_by="Attachment.id")

    __table_args__ = (
        sa.Index("ix_messages_work_item_id", "work_item_id", "id"),
        # The per-sender acknowledgement cap counts recent mail to one address.
        sa.Index("ix_messages_automatic_created", "is_automatic", "created_at"),
        # The acknowledgement cap: automatic messages to one sender in the last hour.
        sa.Index("ix_messages_automatic_to_created", "is_automatic", "to_addresses", "created_at"),
        # Intake: a parent that arrived after its reply is filed on the reply's item.
        sa.Index("ix_messages_in_reply_to", "in_reply_to"),
        one_of("kind", MESSAGE_KINDS),
    )


class Attachment(db.Model):
    """A file on a message. The bytes live in the blob store under their SHA-256 (stored once)."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(sa.String(255))
    content_type: Mapped[str] = mapped_column(sa.String(127))  # sniffed from the bytes, not the name
    declared_content_type: Mapped[Optional[str]] = mapped_column(sa.String(127))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(sa.ForeignKey("blobs.sha256"), index=True)
    content_id: Mapped[Optional[str]] = mapped_column(sa.String(255))
    is_inline: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    message: Mapped["Message"] = relationship(back_populates="attachments")
    blob: Mapped["Blob"] = relationship()
