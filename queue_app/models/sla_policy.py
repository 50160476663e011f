"""SLA policies: which items they match and the targets they set."""
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, one_of

if TYPE_CHECKING:
    from queue_app.models import Calendar, Team

DEFAULT_PAUSE_STATUSES = ["pending_customer", "pending_third_party"]
# While an item waits for its checker the clock is paused (the default) or keeps running.
APPROVAL_WAITS = ("paused", "running")


class SlaPolicy(db.Model):
    __tablename__ = "sla_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    # Match criteria; None matches anything. The most specific matching policy wins.
    match_type: Mapped[Optional[str]] = mapped_column(sa.String(32))
    match_priority: Mapped[Optional[str]] = mapped_column(sa.String(16))
    match_team_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"))
    calendar_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("calendars.id"))
    first_response_minutes: Mapped[int] = mapped_column(default=240)
    resolution_minutes: Mapped[int] = mapped_column(default=2880)
    warn_at_percent: Mapped[int] = mapped_column(default=75, server_default="75")
    pause_statuses: Mapped[list] = mapped_column(sa.JSON, default=lambda: list(DEFAULT_PAUSE_STATUSES))
    approval_wait: Mapped[str] = mapped_column(sa.String(8), default="paused", server_default="paused")
    # Escalation ladder, e.g. [{"after_breach_minutes": 0, "notify": ["assignee", "supervisors"], ...}]
    escalation: Mapped[list] = mapped_column(sa.JSON, default=list)
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())

    team: Mapped[Optional["Team"]] = relationship()
    calendar: Mapped[Optional["Calendar"]] = relationship()

    @property
    def specificity(self):
        return sum(x is not None for x in (self.match_type, self.match_priority, self.match_team_id))

    __table_args__ = (one_of("approval_wait", APPROVAL_WAITS),)
