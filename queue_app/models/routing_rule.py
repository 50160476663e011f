"""Routing rules: conditions on how an item arrived, and what they set."""
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db

if TYPE_CHECKING:
    from queue_app.models import Team

SOURCES = ("email", "form", "api")


class RoutingRule(db.Model):
    __tablename__ = "routing_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    position: Mapped[int] = mapped_column(default=100)  # lower runs first; the first match wins
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    # Conditions: each set one must hold (AND); None means "any".
    source: Mapped[Optional[str]] = mapped_column(sa.String(16))
    recipient: Mapped[Optional[str]] = mapped_column(sa.String(255))
    sender: Mapped[Optional[str]] = mapped_column(sa.String(255))  # full address or "@domain"
    subject_contains: Mapped[Optional[str]] = mapped_column(sa.String(255))
    keywords: Mapped[list] = mapped_column(sa.JSON, default=list)  # any keyword in subject or body
    match_type: Mapped[Optional[str]] = mapped_column(sa.String(32))
    # Actions.
    set_type: Mapped[Optional[str]] = mapped_column(sa.String(32))
    set_team_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("teams.id", ondelete="SET NULL"))
    set_priority: Mapped[Optional[str]] = mapped_column(sa.String(16))

    team: Mapped[Optional["Team"]] = relationship()
