"""Jobs waiting to be handed to RQ, written in the same transaction as the change that needs them."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column


from queue_app.models.base import db, utcnow


class OutboxJob(db.Model):
    __tablename__ = "outbox_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_path: Mapped[str] = mapped_column(sa.String(255))  # dotted path, e.g. "workers.checks.run_checks"
    args: Mapped[list] = mapped_column(sa.JSON, default=list)
    queue: Mapped[str] = mapped_column(sa.String(32), default="default")
    run_at: Mapped[Optional[datetime]]  # a timer: enqueue for this instant with RQ's scheduler
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[Optional[datetime]]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[Optional[str]] = mapped_column(sa.Text)

    __table_args__ = (sa.Index("ix_outbox_jobs_pending", "enqueued_at", "id"),)

    @property
    def rq_job_id(self):
        return f"outbox-{self.id}"
