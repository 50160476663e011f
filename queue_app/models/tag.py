"""Tags: free words people put on items ("vip", "fraud-check") to find them again.

A row is one tag on one item, already normalised (services.items.tags.normalise). The index on
(tag, work_item_id) makes "the items tagged vip" an index lookup; the unique constraint on
(work_item_id, tag) gives an item's own tags too.
"""
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from queue_app.models.base import db, utcnow

MAX_TAG = 40


class ItemTag(db.Model):
    __tablename__ = "item_tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    work_item_id: Mapped[int] = mapped_column(sa.ForeignKey("work_items.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(sa.String(MAX_TAG))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    __table_args__ = (
        sa.UniqueConstraint("work_item_id", "tag"),
        sa.Index("ix_item_tags_tag", "tag", "work_item_id"),
    )

    def __repr__(self):
        return f"<ItemTag {self.tag!r} on {self.work_item_id}>"
