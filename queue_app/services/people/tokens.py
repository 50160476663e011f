"""API tokens: issued with scopes and an expiry, listed, revoked, and checked on each API call.

Only a token's SHA-256 is stored; the clear value is shown once, when it is issued. Issuing and
revoking are recorded in the audit trail like any change to who may do what. A revoked token
stays revoked: reactivating its owner does not bring it back.
"""
import secrets
from datetime import timedelta

import sqlalchemy as sa

from queue_app.models import ApiToken
from queue_app.models.base import utcnow
from queue_app.models.user import SCOPES
from queue_app.services.audit import record as audit
from queue_app.services.errors import Invalid, NotFound
from queue_app.settings import TokenSettings

DEFAULT_SCOPES = ("read", "write")
SERVICE_SCOPES = ("read", "intake")
MAX_NAME = 120
# last_used_at is written at most this often per token, so reads stay reads.
LAST_USED_EVERY = timedelta(minutes=1)


def clean_scopes(scopes):
    scopes = [s.strip().lower() for s in (scopes or ()) if s and s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise Invalid(f"scopes must be some of {', '.join(SCOPES)}", {"scopes": f"some of {', '.join(SCOPES)}"})
    return [s for s in SCOPES if s in scopes]


def token_record(row):
    """What the audit trail records of a token (never its value or hash in clear)."""
    return {"user": row.user.email, "name": row.name, "scopes": row.scope_list, "expires_at": row.expires_at,
            "revoked_at": row.revoked_at, "token": audit.Secret(row.token_hash)}


def issue(session, user, name="cli", *, scopes=None, days=None, actor=None, now=None):
    """Create a token for `user` and return (row, the token in clear)."""
    now = now or utcnow()
    if not user.is_active_user:
        raise Invalid(f"{user.email} is deactivated; reactivate the account first", {"user": "deactivated"})
    name = (name or "").strip() or "cli"
    if len(name) > MAX_NAME:
        raise Invalid("the token name is too long", {"name": f"at most {MAX_NAME} characters"})
    if scopes is None:
        scopes = SERVICE_SCOPES if user.is_service else DEFAULT_SCOPES
    scopes = clean_scopes(scopes)
    if user.is_service and "write" in scopes:
        raise Invalid("a service account's token cannot have the write scope", {"scopes": "read and intake only"})
    days = TokenSettings.current().days if days is None else days
    token = "bd_" + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, user=user, name=name, token_hash=ApiToken.hash(token), created_at=now,
                   expires_at=now + timedelta(days=days), scopes=" ".join(scopes))
    session.add(row)
    session.flush()
    audit.changed(session, actor, "api_token", row, None, token_record(row), label=f"{name} of {user.email}", now=now)
    return row, token


def tokens_of(session, user):
    """The user's tokens, newest first, revoked and expired ones included (they say so)."""
    return session.scalars(sa.select(ApiToken).where(ApiToken.user_id == user.id)
                           .order_by(ApiToken.id.desc())).all()


def get_token(session, token_id, *, owner=None):
    """A token by id; with `owner`, only one of theirs (anyone else's is not found)."""
    row = session.get(ApiToken, token_id)
    if row is None or (owner is not None and row.user_id != owner.id):
        raise NotFound(f"no API token #{token_id}")
    return row


def revoke(session, row, *, actor, now=None):
    """Revoke a token for good; revoking a revoked token changes nothing."""
    if row.revoked_at is not None:
        return row
    before = token_record(row)
    row.revoked_at = now or utcnow()
    session.flush()
    audit.changed(session, actor, "api_token", row, before, token_record(row),
                  label=f"{row.name} of {row.user.email}", now=now)
    return row


def revoke_all(session, user, *, actor, now=None):
    """Revoke every live token of `user` (their account was deactivated)."""
    now = now or utcnow()
    rows = session.scalars(sa.select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))).all()
    for row in rows:
        revoke(session, row, actor=actor, now=now)
    return rows


def check(session, token, now=None):
    """(the token row, None) for a usable token, or (None, why not) for the 401."""
    now = now or utcnow()
    row = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == ApiToken.hash(token))) if token else None
    if row is None:
        return None, "the API token is invalid"
    if row.revoked_at is not None:
        return None, "the API token has been revoked"
    if row.is_expired(now):
        return None, f"the API token expired on {row.expires_at:%Y-%m-%d}; ask for a new one"
    if not row.user.is_active:
        return None, "the API token's account is deactivated"
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        row.last_used_at = now
    return row, None
