"""One signed-in browser, so each can be listed, timed out and signed out on its own."""
import hashlib
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from queue_app.models.base import db, utcnow


class UserSession(db.Model):
    """A browser's sign-in; the browser holds the key (in its Flask session), we keep only its SHA-256."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    user_agent: Mapped[str] = mapped_column(sa.String(255), default="")
    remote_addr: Mapped[str] = mapped_column(sa.String(64), default="")
    ended_at: Mapped[Optional[datetime]]

    @staticmethod
    def hash(key):
        return hashlib.sha256(key.encode()).hexdigest()
