"""Canned responses: reply texts with placeholders, for one team or (team NULL) for every team."""
from datetime import datetime
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, utcnow

if TYPE_CHECKING:
    from queue_app.models import Team, User


class CannedResponse(db.Model):
    __tablename__ = "canned_responses"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(120))
    body: Mapped[str] = mapped_column(sa.Text)  # placeholders as in services.items.canned_responses.PLACEHOLDERS
    team_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    created_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    team: Mapped[Optional["Team"]] = relationship()
    created_by: Mapped[Optional["User"]] = relationship()

    def __repr__(self):
        return f"<CannedResponse {self.title!r}>"
