"""A person's word on the documents of a verification item, and a supervisor's override of
failed checks. Both are append-only: the latest verdict per document is the current one, and
the history stays for the auditor."""
from datetime import date, datetime
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, one_of, utcnow

if TYPE_CHECKING:
    from queue_app.models import Attachment, User

VERDICTS = ("verified", "rejected", "resubmission_needed")


class DocumentVerdict(db.Model):
    __tablename__ = "document_verdicts"

    id: Mapped[int] = mapped_column(primary_key=True)
    work_item_id: Mapped[int] = mapped_column(sa.ForeignKey("work_items.id", ondelete="CASCADE"))
    attachment_id: Mapped[int] = mapped_column(sa.ForeignKey("attachments.id", ondelete="CASCADE"))
    verdict: Mapped[str] = mapped_column(sa.String(32))
    reason: Mapped[Optional[str]] = mapped_column(sa.String(200))  # from the team's list
    note: Mapped[Optional[str]] = mapped_column(sa.Text)
    decided_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A verified document's expiry date when it was verified, and the item that re-verifies it.
    expires_on: Mapped[Optional[date]]
    reverification_item_id: Mapped[Optional[int]] = mapped_column(
        sa.ForeignKey("work_items.id", ondelete="SET NULL"))

    attachment: Mapped["Attachment"] = relationship()
    decided_by: Mapped[Optional["User"]] = relationship()

    __table_args__ = (
        sa.Index("ix_document_verdicts_work_item_id", "work_item_id", "attachment_id", "id"),
        one_of("verdict", VERDICTS),
    )


class CheckOverride(db.Model):
    """A supervisor let an item be resolved as verified although these mandatory checks failed."""

    __tablename__ = "check_overrides"

    id: Mapped[int] = mapped_column(primary_key=True)
    work_item_id: Mapped[int] = mapped_column(sa.ForeignKey("work_items.id", ondelete="CASCADE"), index=True)
    checks: Mapped[list] = mapped_column(sa.JSON)  # the failed mandatory checks it covers
    reason: Mapped[str] = mapped_column(sa.Text)
    decided_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)

    decided_by: Mapped[Optional["User"]] = relationship()
