"""A link mailed to someone to set their password: a password reset or an invitation.

The row is also the mail's record (send_status, sent_at, like Notification), so the mail job
sends it at most once. The link's token is never stored: only its SHA-256 (to find the row) and
the random salt the token is derived from with the app's secret key (services.people.account_links).
"""
from datetime import datetime
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, one_of, utcnow

if TYPE_CHECKING:
    from queue_app.models import User

PURPOSES = ("password_reset", "invitation")


class AccountLink(db.Model):
    __tablename__ = "account_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(sa.String(20))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    salt: Mapped[str] = mapped_column(sa.String(64))
    to_address: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # When the link was used. Links that stop working unused (a resent invitation, another reset
    # link used) are deleted: their mail, if still waiting, is not sent.
    used_at: Mapped[Optional[datetime]]
    sent_at: Mapped[Optional[datetime]]
    send_status: Mapped[str] = mapped_column(sa.String(16), default="queued")

    user: Mapped["User"] = relationship()

    __table_args__ = (one_of("purpose", PURPOSES),)

    def is_usable(self, now):
        return self.used_at is None and now < self.expires_at
