"""People who log in, and the API tokens they hold."""
import hashlib
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from queue_app.models.base import db, one_of, utcnow
from queue_app.models.team import team_members

if TYPE_CHECKING:
    from queue_app.models import Team

ROLES = ("executive", "supervisor", "admin")
# A partner system's account: API tokens only, never the web; files items for its teams.
SERVICE = "service"
ACCOUNT_ROLES = ROLES + (SERVICE,)

# What a token may do: read items, change them, create them (intake).
SCOPES = ("read", "write", "intake")

# The teams a service account may file items for. Not team membership: a service account is
# nobody's colleague, is never assigned work and sees nothing of the team's queue.
service_account_teams = sa.Table(
    "service_account_teams",
    db.Model.metadata,
    sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("team_id", sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(255), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(20), default="executive")
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC", server_default="UTC")
    capacity: Mapped[int] = mapped_column(default=20, server_default="20")
    skills: Mapped[list] = mapped_column(sa.JSON, default=list)
    out_of_office_from: Mapped[Optional[datetime]]
    out_of_office_until: Mapped[Optional[datetime]]
    is_active_user: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    # Part of the login cookie: rotating it ends every other session on the server side.
    session_nonce: Mapped[str] = mapped_column(sa.String(32), default=lambda: secrets.token_hex(8))
    # Two-step sign-in (services.people.mfa): the TOTP secret (set at enrolment, on once confirmed),
    # and the last time-step a code was accepted for, so no code is accepted twice.
    mfa_secret: Mapped[Optional[str]] = mapped_column(sa.String(64))
    mfa_enabled_at: Mapped[Optional[datetime]]
    mfa_last_step: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    # {notification kind: "email" | "digest" | "in_app" | "off"}; kinds left out keep their default.
    notification_prefs: Mapped[Optional[dict]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    teams: Mapped[list["Team"]] = relationship(secondary=team_members, back_populates="members", order_by="Team.name")
    intake_teams: Mapped[list["Team"]] = relationship(secondary=service_account_teams, order_by="Team.name")

    __table_args__ = (one_of("role", ACCOUNT_ROLES),)

    def set_password(self, password):
        self.password_hash = generate_password_hash(password)

    def check_password(self, password):
        return check_password_hash(self.password_hash, password)

    def rotate_session_nonce(self):
        self.session_nonce = secrets.token_hex(8)

    def get_id(self):
        return f"{self.id}:{self.session_nonce}"

    @property
    def is_active(self):
        return self.is_active_user

    @property
    def has_mfa(self):
        return self.mfa_enabled_at is not None

    @property
    def team_ids(self):
        return {t.id for t in self.teams}

    @property
    def is_service(self):
        return self.role == SERVICE

    def is_out_of_office(self, now):
        if self.out_of_office_from is None:
            return False
        return self.out_of_office_from <= now and (self.out_of_office_until is None or now < self.out_of_office_until)

    def __repr__(self):
        return f"<User {self.email} {self.role}>"


class ApiToken(db.Model):
    """A bearer token; only its SHA-256 is stored, so a database leak reveals no token."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(120), default="cli")
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[Optional[datetime]]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[Optional[datetime]]
    # Space-separated, from SCOPES.
    scopes: Mapped[str] = mapped_column(sa.String(60), default="read write", server_default="read write")

    user: Mapped["User"] = relationship()

    @staticmethod
    def hash(token):
        return hashlib.sha256(token.encode()).hexdigest()

    @property
    def scope_list(self):
        return [s for s in SCOPES if s in self.scopes.split()]

    def is_expired(self, now):
        return self.expires_at <= now

    def is_usable(self, now):
        return self.revoked_at is None and not self.is_expired(now)
