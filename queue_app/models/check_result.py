"""Results of automated checks, one row per run of one check on one item."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from queue_app.models.base import db, one_of, utcnow

CHECK_STATUSES = ("pending", "passed", "warning", "failed", "error")


class CheckResult(db.Model):
    __tablename__ = "check_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    work_item_id: Mapped[int] = mapped_column(sa.ForeignKey("work_items.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    message: Mapped[str] = mapped_column(sa.Text, default="")
    data: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    # Which version of the item was checked, so a re-run for the same version is a no-op.
    item_version: Mapped[int] = mapped_column(default=0)
    # The run this result belongs to: "v<version>" for automatic runs, "rerun-<token>" for a re-run
    # someone asked for. One result per (item, check, run), so a re-delivered job stores nothing new.
    run_key: Mapped[Optional[str]] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.Index("ix_check_results_work_item_id", "work_item_id", "name", "id"),
        sa.UniqueConstraint("work_item_id", "name", "run_key", name="uq_check_results_run"),
        one_of("status", CHECK_STATUSES),
    )
