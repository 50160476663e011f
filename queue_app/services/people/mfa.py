"""Two-step sign-in: a time-based code (TOTP, RFC 6238) from an authenticator app after the password,
or one of ten single-use recovery codes; and the roles whose people must use it.

- Enrolment: a secret is made and kept on the user row, shown once (QR code and key), and switched
  on only when a code made from it is confirmed. Once on, it is never shown again.
- A code is accepted for its 30-second step or one either side (clocks drift), and never twice:
  the last step accepted is kept, and a code of that step or an earlier one is refused.
- Recovery codes are stored as SHA-256 (they are random, 60 bits); each works once; making new
  ones ends the old ones.
- Every change (on, new recovery codes, a recovery code used, reset by an admin, the roles that
  require it) is recorded in the audit trail, secrets masked.

Service accounts never sign in to the web, so none of this applies to them.
"""
import hmac
import re
import secrets

import pyotp
import sqlalchemy as sa

from queue_app.models import MfaRequirement, RecoveryCode, User
from queue_app.models.base import utcnow
from queue_app.models.user import ROLES
from queue_app.services.audit import record as audit
from queue_app.services.errors import Conflict, Invalid
from queue_app.settings import AccountSettings

STEP_SECONDS = 30
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
_RECOVERY_GROUPS = 3
_RECOVERY_GROUP_LENGTH = 4

WRONG_CODE = "That code is not right (or was already used). Try the next one your app shows."

# What the sign-in asks after a right password: nothing, a code, or enrolment first.
CODE = "code"
ENROL = "enrol"


# --- which roles must use it -------------------------------------------------------------------

def required_roles(session):
    return sorted(session.scalars(sa.select(MfaRequirement.role)).all(), key=ROLES.index)


def is_required(session, user):
    return not user.is_service and user.role in required_roles(session)


def set_required_roles(session, roles, *, actor, now=None):
    """Require two-step sign-in of the people of `roles` (and of no other role). People of such a
    role without it set it up at their next sign-in; sessions already open go on."""
    roles = list(dict.fromkeys(roles or ()))
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise Invalid(f"unknown role {unknown[0]!r}", {"roles": f"some of {', '.join(ROLES)}"})
    before = required_roles(session)
    session.execute(sa.delete(MfaRequirement).where(MfaRequirement.role.not_in(roles)))
    for role in roles:
        if role not in before:
            session.add(MfaRequirement(role=role, since=now or utcnow()))
    session.flush()
    after = required_roles(session)
    audit.changed(session, actor, "mfa_policy", None, {"roles": before}, {"roles": after},
                  label="Two-step sign-in required for", now=now)
    return after


def second_step(session, user):
    """What a right password leads to: CODE when the user has two-step sign-in, ENROL when their role
    requires it and they have none yet, else None (signed in)."""
    if user.is_service:
        return None
    if user.has_mfa:
        return CODE
    return ENROL if is_required(session, user) else None


# --- enrolment ---------------------------------------------------------------------------------

def start_enrolment(session, user):
    """The secret to show for enrolment: a new one, or the one not yet confirmed (the page reloaded)."""
    if user.has_mfa:
        raise Conflict("two-step sign-in is already on; an admin can reset it")
    if not user.mfa_secret:
        user.mfa_secret = pyotp.random_base32()
        session.flush()
    return user.mfa_secret


def enrolment_uri(user):
    """The otpauth:// address the QR code holds (the app reads issuer, account and secret from it)."""
    return pyotp.TOTP(user.mfa_secret).provisioning_uri(name=user.email, issuer_name=AccountSettings.current().issuer)


def grouped_key(secret):
    """The secret in groups of four, easier to type by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def confirm_enrolment(session, user, code, *, now=None):
    """Switch two-step sign-in on with a code made from the enrolment secret; returns the ten recovery
    codes, in clear this once."""
    now = now or utcnow()
    if user.has_mfa:
        raise Conflict("two-step sign-in is already on")
    if not user.mfa_secret:
        raise Invalid("start the set-up first", {"code": "start the set-up first"})
    if not _use_code(session, user, code, now):
        raise Invalid(WRONG_CODE, {"code": WRONG_CODE})
    user.mfa_enabled_at = now
    codes = _new_recovery_codes(session, user, now)
    audit.changed(session, user, "user", user, {"two_step": False},
                  {"two_step": True, "mfa_secret": audit.Secret(user.mfa_secret)}, action="mfa_enabled", now=now)
    return codes


# --- codes ---------------------------------------------------------------------------------------

def _digits(code):
    return re.sub(r"\s+", "", code or "")


def _step_of(secret, code, now):
    """The time-step `code` was made for (within the drift allowed), or None."""
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def _use_code(session, user, code, now):
    """True, and the step remembered, for a right code of a step later than the last one used. One
    guarded UPDATE: two requests with the same code cannot both use it."""
    code = _digits(code)
    if not re.fullmatch(r"\d{6}", code):
        return False
    step = _step_of(user.mfa_secret, code, now)
    if step is None:
        return False
    later = sa.or_(User.mfa_last_step.is_(None), User.mfa_last_step < step)
    used = session.execute(sa.update(User).where(User.id == user.id, later).values(mfa_last_step=step),
                           execution_options={"synchronize_session": "fetch"})
    return used.rowcount == 1


def _recovery_code():
    groups = ("".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_GROUP_LENGTH))
              for _ in range(_RECOVERY_GROUPS))
    return "-".join(groups)


def _clean_recovery_code(code):
    return re.sub(r"[\s-]+", "", (code or "").lower())


def _new_recovery_codes(session, user, now):
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=RecoveryCode.hash(_clean_recovery_code(c)), created_at=now)
                    for c in codes)
    session.flush()
    return codes


def recovery_codes_left(session, user):
    return session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)
                          .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))


def _use_recovery_code(session, user, code, now):
    cleaned = _clean_recovery_code(code)
    if len(cleaned) != _RECOVERY_GROUPS * _RECOVERY_GROUP_LENGTH:
        return False
    used = session.execute(sa.update(RecoveryCode).where(
        RecoveryCode.user_id == user.id, RecoveryCode.code_hash == RecoveryCode.hash(cleaned),
        RecoveryCode.used_at.is_(None)).values(used_at=now))
    return used.rowcount == 1  # one UPDATE: two requests with the same code cannot both use it


def regenerate_recovery_codes(session, user, *, now=None):
    """Ten new recovery codes (returned in clear this once); the old ones no longer work."""
    now = now or utcnow()
    if not user.has_mfa:
        raise Conflict("two-step sign-in is not on")
    codes = _new_recovery_codes(session, user, now)
    audit.security_event(session, user, "recovery_codes_regenerated", user, email=user.email, now=now)
    return codes


def complete_sign_in(session, user, code, *, remote_addr=None, now=None):
    """The second step of signing in: "code" or "recovery_code" when `code` is right (a recovery code
    is used up), else None. Either way recorded in the audit trail, as sign_in or sign_in_failed."""
    now = now or utcnow()
    factor = None
    if user.has_mfa and _use_code(session, user, code, now):
        factor = "code"
    elif user.has_mfa and _use_recovery_code(session, user, code, now):
        factor = "recovery_code"
        audit.security_event(session, user, "recovery_code_used", user, email=user.email,
                             details={"remote_addr": remote_addr, "left": recovery_codes_left(session, user)}, now=now)
    if factor is None:
        audit.security_event(session, "anonymous", "sign_in_failed", user, email=user.email,
                             details={"remote_addr": remote_addr, "email": user.email, "reason": "wrong code"},
                             now=now)
        return None
    audit.security_event(session, user, "sign_in", user, email=user.email,
                         details={"remote_addr": remote_addr, "second_step": factor}, now=now)
    return factor


def turn_off(session, user, *, actor, now=None):
    """Remove the user's two-step sign-in (secret and recovery codes); recorded. The caller ends their
    sessions (services.people.users.reset_mfa)."""
    was_on = user.has_mfa
    before = audit.Secret(user.mfa_secret)
    user.mfa_secret = None
    user.mfa_enabled_at = None
    user.mfa_last_step = None
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    session.flush()
    audit.changed(session, actor, "user", user, {"two_step": was_on, "mfa_secret": before},
                  {"two_step": False, "mfa_secret": audit.Secret(None)}, action="mfa_reset", now=now)
