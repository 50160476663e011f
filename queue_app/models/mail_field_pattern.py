"""A team's own way of finding a work item field in incoming mail (services.intake.mail_fields)."""
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from queue_app.models.base import db, utcnow


class MailFieldPattern(db.Model):
    __tablename__ = "mail_field_patterns"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    field: Mapped[str] = mapped_column(sa.String(40))  # a work type field name (services.items.work_types)
    pattern: Mapped[str] = mapped_column(sa.String(1000))  # a regular expression with one capture group
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    position: Mapped[int] = mapped_column(default=100)  # the order they are listed and tried in
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
