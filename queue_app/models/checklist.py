"""Checklists (standard operating procedures): the steps a team works through on items of one work
type, and which of them are ticked on an item.

A step is never deleted, only switched off (active False), so a tick always names a real step. A tick
row is the step's current state on one item: ticking adds it, unticking removes it. The history (who
ticked or unticked what, and the step's text at the time) is in the item's events.
"""
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, utcnow

if TYPE_CHECKING:
    from queue_app.models import Team, User


class ChecklistStep(db.Model):
    __tablename__ = "checklist_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"))
    work_type: Mapped[str] = mapped_column(sa.String(40))
    position: Mapped[int] = mapped_column(default=0)  # order within the team and work type, lowest first
    text: Mapped[str] = mapped_column(sa.String(500))
    # An open mandatory step blocks resolving the item (services.items.state).
    mandatory: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    team: Mapped["Team"] = relationship()

    __table_args__ = (sa.Index("ix_checklist_steps_team_id", "team_id", "work_type", "position"),)

    def __repr__(self):
        return f"<ChecklistStep {self.text!r}>"


class ChecklistTick(db.Model):
    __tablename__ = "checklist_ticks"

    id: Mapped[int] = mapped_column(primary_key=True)
    work_item_id: Mapped[int] = mapped_column(sa.ForeignKey("work_items.id", ondelete="CASCADE"))
    step_id: Mapped[int] = mapped_column(sa.ForeignKey("checklist_steps.id", ondelete="CASCADE"), index=True)
    ticked_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    ticked_at: Mapped[datetime] = mapped_column(default=utcnow)

    ticked_by: Mapped["User"] = relationship()

    __table_args__ = (sa.UniqueConstraint("work_item_id", "step_id"),)
