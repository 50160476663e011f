"""One SLA step (warning, breach, escalation level) taken on one item.

The unique constraint is what makes every step happen exactly once per item, whoever
gets there first: a timer job, a retried job, a second worker or the sweep.
"""
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from queue_app.models.base import db, utcnow


class SlaEscalation(db.Model):
    __tablename__ = "sla_escalations"

    id: Mapped[int] = mapped_column(primary_key=True)
    work_item_id: Mapped[int] = mapped_column(sa.ForeignKey("work_items.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(sa.String(16))  # first_response | resolution
    stage: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(16))  # warning | breach | escalation
    level: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[datetime]
    fired_at: Mapped[datetime] = mapped_column(default=utcnow)
    fired_by: Mapped[str] = mapped_column(sa.String(16), default="timer")  # timer | sweep

    __table_args__ = (sa.UniqueConstraint("work_item_id", "target", "stage", name="uq_sla_escalations_step"),)
