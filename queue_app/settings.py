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
