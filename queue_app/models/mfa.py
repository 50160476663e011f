"""Two-step sign-in's records beyond the user row: recovery codes, and the roles that must use it."""
import hashlib
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from queue_app.models.base import db, one_of, utcnow
from queue_app.models.user import ROLES


class RecoveryCode(db.Model):
    """One single-use code for when the authenticator is not at hand; only its SHA-256 is kept."""

    __tablename__ = "mfa_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[Optional[datetime]]

    @staticmethod
    def hash(code):
        return hashlib.sha256(code.encode()).hexdigest()


class MfaRequirement(db.Model):
    """A role whose people must sign in with a second step (one row per such role)."""

    __tablename__ = "mfa_required_roles"

    role: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    since: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (one_of("role", ROLES),)
