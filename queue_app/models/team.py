"""Teams and their members."""
from datetime import datetime
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, utcnow

if TYPE_CHECKING:
    from queue_app.models import Calendar, User

team_members = sa.Table(
    "team_members",
    db.Model.metadata,
    sa.Column("team_id", sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True),
)

AUTO_ASSIGN_POLICIES = ("manual", "round_robin", "least_loaded", "skills", "sla_aware")


class Team(db.Model):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    email: Mapped[Optional[str]] = mapped_column(sa.String(255))
    calendar_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("calendars.id"))
    # The work types this team handles; routing falls back to the first team handling a type.
    work_types: Mapped[list] = mapped_column(sa.JSON, default=list)
    auto_assign: Mapped[str] = mapped_column(sa.String(20), default="manual", server_default="manual")
    # Resolutions above this amount need a second person's approval (maker-checker).
    approval_threshold: Mapped[Optional[float]] = mapped_column(sa.Numeric(14, 2))
    # Business minutes a checker has to decide a pending approval (None: no due time).
    approval_due_minutes: Mapped[Optional[int]]
    # Resolved items close by themselves this many days after they were resolved; NULL: never.
    auto_close_days: Mapped[Optional[int]]
    # Executives may pass their own items to a colleague of the team (services.assignment.handing).
    executives_may_pass: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    calendar: Mapped[Optional["Calendar"]] = relationship()
    members: Mapped[list["User"]] = relationship(secondary=team_members, back_populates="teams", order_by="User.name")

    def __repr__(self):
        return f"<Team {self.name}>"
