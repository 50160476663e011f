"""Maker-checker approvals: one person asks, another decides; and who may decide for a team."""
from datetime import datetime
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, one_of, utcnow

if TYPE_CHECKING:
    from queue_app.models import User, WorkItem

APPROVAL_STATUSES = ("pending", "approved", "rejected", "void")  # void: what it approved changed before the decision

# Designated checkers: members of a team (not supervisors) who may also decide its approvals.
team_checkers = sa.Table(
    "team_checkers",
    db.Model.metadata,
    sa.Column("team_id", sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Approval(db.Model):
    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    work_item_id: Mapped[int] = mapped_column(sa.ForeignKey("work_items.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(sa.String(40))  # e.g. "resolve"
    status: Mapped[str] = mapped_column(sa.String(16), default="pending", index=True)
    requested_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    decided_at: Mapped[Optional[datetime]]
    comment: Mapped[Optional[str]] = mapped_column(sa.Text)
    data: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    # When a checker should have decided (the team's approval_due_minutes in business time), and
    # when the checkers were told it is nearly due and overdue (each once).
    due_at: Mapped[Optional[datetime]] = mapped_column(index=True)
    warned_at: Mapped[Optional[datetime]]
    overdue_at: Mapped[Optional[datetime]]

    work_item: Mapped["WorkItem"] = relationship()
    requested_by: Mapped["User"] = relationship(foreign_keys=[requested_by_id])
    decided_by: Mapped[Optional["User"]] = relationship(foreign_keys=[decided_by_id])

    __table_args__ = (one_of("status", APPROVAL_STATUSES),)
