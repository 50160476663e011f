"""Append-only history of a work item: the audit trail. Written only by services.items.events."""
from datetime import datetime
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, utcnow

if TYPE_CHECKING:
    from queue_app.models import User


class Event(db.Model):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    work_item_id: Mapped[int] = mapped_column(sa.ForeignKey("work_items.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(40))
    actor_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    actor_label: Mapped[str] = mapped_column(sa.String(255))  # "alice@example.com", "system", "worker"
    at: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict] = mapped_column(sa.JSON, default=dict)

    actor: Mapped[Optional["User"]] = relationship()

    __table_args__ = (sa.Index("ix_events_work_item_id", "work_item_id", "id"),)
