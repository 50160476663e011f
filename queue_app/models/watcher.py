"""Who watches which item: a watcher is told of its status changes, the requester's replies and notes."""
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from queue_app.models.base import db, utcnow


class Watcher(db.Model):
    __tablename__ = "watchers"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    work_item_id: Mapped[int] = mapped_column(sa.ForeignKey("work_items.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # One row per person and item; it also serves "who watches this item" (work_item_id first).
    __table_args__ = (sa.UniqueConstraint("work_item_id", "user_id"),)
