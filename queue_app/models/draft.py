"""What a person has typed in an item's reply or note box and not sent yet: one row per person,
item and box, kept until that reply or note is sent (or emptied)."""
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from queue_app.models.base import db, one_of, utcnow

DRAFT_BOXES = ("reply", "note")


class Draft(db.Model):
    __tablename__ = "item_drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    work_item_id: Mapped[int] = mapped_column(sa.ForeignKey("work_items.id", ondelete="CASCADE"), index=True)
    box: Mapped[str] = mapped_column(sa.String(16))
    body: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("user_id", "work_item_id", "box"),
        one_of("box", DRAFT_BOXES),
    )
