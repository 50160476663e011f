"""The work item: one unit of back-office work, tracked against its SLA."""
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, one_of, utcnow

if TYPE_CHECKING:
    from queue_app.models import ItemTag, Message, SlaPolicy, Team, User

TYPES = ("escalation", "return", "document_verification", "discrepancy_fix", "general")
STATUSES = ("new", "open", "pending_customer", "pending_third_party", "awaiting_approval", "resolved", "closed")
OPEN_STATUSES = ("new", "open", "pending_customer", "pending_third_party", "awaiting_approval")
PRIORITIES = ("low", "normal", "high", "urgent")
SLA_STATES = ("on_track", "at_risk", "breached", "paused", "met")
SOURCES = ("email", "form", "api", "manual")


def format_ref(item_id):
    return f"BO-{item_id:06d}"


class WorkItem(db.Model):
    __tablename__ = "work_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[Optional[str]] = mapped_column(sa.String(16), unique=True)
    type: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(24), default="new")
    priority: Mapped[str] = mapped_column(sa.String(16), default="normal")
    source: Mapped[str] = mapped_column(sa.String(16), default="api")
    subject: Mapped[str] = mapped_column(sa.String(255))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("teams.id"))
    assignee_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    requester_email: Mapped[Optional[str]] = mapped_column(sa.String(255))
    requester_name: Mapped[Optional[str]] = mapped_column(sa.String(255))
    created_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))

    # Type-specific fields (which apply to which type: services/items/work_types.py).
    order_number: Mapped[Optional[str]] = mapped_column(sa.String(64), index=True)
    purchase_date: Mapped[Optional[date]]
    amount: Mapped[Optional[Decimal]] = mapped_column(sa.Numeric(14, 2))
    currency: Mapped[Optional[str]] = mapped_column(sa.String(3))
    reason: Mapped[Optional[str]] = mapped_column(sa.Text)
    document_type: Mapped[Optional[str]] = mapped_column(sa.String(64))
    document_number: Mapped[Optional[str]] = mapped_column(sa.String(64), index=True)
    expires_on: Mapped[Optional[date]]
    account: Mapped[Optional[str]] = mapped_column(sa.String(64), index=True)
    expected_amount: Mapped[Optional[Decimal]] = mapped_column(sa.Numeric(14, 2))
    actual_amount: Mapped[Optional[Decimal]] = mapped_column(sa.Numeric(14, 2))
    # [[amount, currency, team id], ...]: the money the item carried before its current values,
    # since it was created or last approved (services.approvals.stake keeps it).
    stake_history: Mapped[Optional[list]] = mapped_column(sa.JSON)
    related_ref: Mapped[Optional[str]] = mapped_column(sa.String(16))
    # The names of the fields above taken from the email the item came from (until a person changes them).
    fields_from_email: Mapped[Optional[list]] = mapped_column(sa.JSON)
    severity: Mapped[Optional[str]] = mapped_column(sa.String(16))

    # SLA clock. sla_next_due is the earliest pending deadline, the inbox's sort key.
    sla_policy_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("sla_policies.id", ondelete="SET NULL"))
    first_response_due: Mapped[Optional[datetime]] = mapped_column(index=True)
    resolution_due: Mapped[Optional[datetime]] = mapped_column(index=True)
    sla_next_due: Mapped[Optional[datetime]]
    first_responded_at: Mapped[Optional[datetime]]
    sla_state: Mapped[str] = mapped_column(sa.String(16), default="on_track")
    sla_paused_at: Mapped[Optional[datetime]]
    sla_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # Business minutes spent paused so far: recalculation adds them back to the targets.
    sla_paused_minutes: Mapped[float] = mapped_column(sa.Float, default=0.0, server_default="0")
    # How far each target's ladder has gone: 0 nothing, 1 warned, 2 breached, 2+k escalation level k+1.
    first_response_stage: Mapped[int] = mapped_column(default=0, server_default="0")
    resolution_stage: Mapped[int] = mapped_column(default=0, server_default="0")
    # The next instant an SLA step (warning, breach, escalation) is due; the sweep's indexed key.
    sla_next_check_at: Mapped[Optional[datetime]] = mapped_column(index=True)
    escalation_level: Mapped[int] = mapped_column(default=0, server_default="0")
    needs_attention: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[Optional[datetime]] = mapped_column(index=True)  # reports: resolved per day
    closed_at: Mapped[Optional[datetime]]
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    team: Mapped["Team"] = relationship()
    assignee: Mapped[Optional["User"]] = relationship(foreign_keys=[assignee_id])
    created_by: Mapped[Optional["User"]] = relationship(foreign_keys=[created_by_id])
    sla_policy: Mapped[Optional["SlaPolicy"]] = relationship()
    messages: Mapped[list["Message"]] = relationship(back_populates="work_item", order_by="Message.id")
    # Read-only: tags change through services.items.tags, which keeps this in step.
    tags: Mapped[list["ItemTag"]] = relationship(order_by="ItemTag.tag", viewonly=True)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        # Executive inbox: my items, most urgent first.
        sa.Index("ix_work_items_assignee_status_due", "assignee_id", "status", "sla_next_due", "id"),
        # Supervisor view: a team's (unassigned) queue by urgency.
        sa.Index("ix_work_items_team_assignee_due", "team_id", "assignee_id", "sla_next_due", "id"),
        sa.Index("ix_work_items_status_due", "status", "sla_next_due"),
        # A requester's items, newest first (the requester page and its API keyset).
        sa.Index("ix_work_items_requester_email_id", "requester_email", "id"),
        # Reports: a team's items created / resolved per day (index-only range counts).
        sa.Index("ix_work_items_team_created", "team_id", "created_at"),
        sa.Index("ix_work_items_team_resolved", "team_id", "resolved_at"),
        one_of("type", TYPES),
        one_of("status", STATUSES),
        one_of("priority", PRIORITIES),
    )

    @property
    def is_open(self):
        return self.status in OPEN_STATUSES

    def __repr__(self):
        return f"<WorkItem {self.ref} {self.type} {self.status}>"
