"""The settings the code below the views reads, as one small object per area.

Each object is built from the app's config when a unit of work starts (a message filed, an
import, a commit), so code never calls `current_app.config.get(key, default)` and no default
is written twice: they are config.Config's. Outside an app (a unit test of plain functions)
config.Config's values apply.
"""
from dataclasses import dataclass
from email.utils import parseaddr

from flask import current_app, has_app_context

from config import Config


def _value(key):
    if has_app_context() and key in current_app.config:
        return current_app.config[key]
    return getattr(Config, key)


@dataclass(frozen=True)
class MailSettings:
    """Who our own mail comes from: MAIL_FROM (which customers answer) and MAIL_DOMAIN (of our Message-IDs)."""

    sender: str
    sender_address: str  # MAIL_FROM's address (it may carry a display name), lower case, or ""
    domain: str

    @classmethod
    def current(cls):
        sender = _value("MAIL_FROM") or ""
        return cls(sender=sender, sender_address=parseaddr(sender)[1].lower(), domain=_value("MAIL_DOMAIN") or "")


@dataclass(frozen=True)
class IntakeSettings:
    """Email intake's limits: the largest message filed, and acknowledgements per sender and hour."""

    max_message_bytes: int
    acks_per_sender_hour: int

    @classmethod
    def current(cls):
        return cls(max_message_bytes=_value("INTAKE_MAX_MESSAGE_BYTES"),
                   acks_per_sender_hour=_value("INTAKE_ACKS_PER_SENDER_HOUR"))


@dataclass(frozen=True)
class OutboxSettings:
    """Whether committed jobs are handed to RQ at once (else only the relay does it)."""

    deliver_on_commit: bool

    @classmethod
    def current(cls):
        return cls(deliver_on_commit=bool(_value("OUTBOX_DELIVER_ON_COMMIT")))


@dataclass(frozen=True)
class TokenSettings:
    """How long a new API token lives (API_TOKEN_DAYS)."""

    days: int

    @classmethod
    def current(cls):
        return cls(days=int(_value("API_TOKEN_DAYS")))


@dataclass(frozen=True)
class SessionSettings:
    """How long a signed-in browser stays signed in: idle at most, and in all."""

    idle_minutes: int
    max_hours: int

    @classmethod
    def current(cls):
        return cls(idle_minutes=_value("SESSION_IDLE_MINUTES"), max_hours=_value("SESSION_MAX_HOURS"))


@dataclass(frozen=True)
class AccountSettings:
    """Two-step sign-in and the links mailed to set a password (reset, invitation).

    `link_key` (the app's SECRET_KEY) derives each link's token from the random salt its row keeps,
    so the database alone never holds a usable link.
    """

    issuer: str
    code_minutes: int
    reset_minutes: int
    invitation_days: int
    base_url: str
    link_key: str

    @classmethod
    def current(cls):
        return cls(issuer=_value("MFA_ISSUER") or "Backdesk", code_minutes=_value("SIGN_IN_CODE_MINUTES"),
                   reset_minutes=_value("PASSWORD_RESET_MINUTES"), invitation_days=_value("INVITATION_DAYS"),
                   base_url=(_value("BASE_URL") or "").rstrip("/"), link_key=_value("SECRET_KEY") or "")
