"""Internal notifications to staff (assignments, SLA warnings and breaches, approvals, replies): each is
in the person's in-app list, and mailed now, in a daily digest, or not at all, as they chose per kind."""
from datetime import datetime
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, utcnow

if TYPE_CHECKING:
    from queue_app.models import WorkItem


class Notification(db.Model):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    work_item_id: Mapped[int] = mapped_column(sa.ForeignKey("work_items.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    to_address: Mapped[str] = mapped_column(sa.String(255))
    subject: Mapped[str] = mapped_column(sa.String(255))
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[Optional[datetime]]
    # queued/sending/sent/failed/unconfirmed: mailed now; digest: waits for the daily digest; in_app: never mailed.
    send_status: Mapped[str] = mapped_column(sa.String(16), default="queued")
    kind: Mapped[str] = mapped_column(sa.String(32), default="other", server_default="other")
    read_at: Mapped[Optional[datetime]]

    work_item: Mapped["WorkItem"] = relationship()

    __table_args__ = (
        sa.Index("ix_notifications_user_id_read_at", "user_id", "read_at", "id"),
    )
