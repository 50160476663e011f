"""People: accounts, passwords, sessions and API tokens."""
import secrets
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email

from queue_app.models import ApiToken, Team, User
from queue_app.models.base import utcnow
from queue_app.models.user import ROLES
from queue_app.models.work_item import TYPES
from queue_app.services.errors import Conflict, Invalid, NotFound

MIN_PASSWORD_LENGTH = 8


def normalise_email(email):
    try:
        return validate_email(email or "", check_deliverability=False, globally_deliverable=False).normalized.lower()
    except EmailNotValidError as exc:
        raise Invalid(f"invalid email address: {exc}", {"email": str(exc)}) from None


def check_password_rules(password):
    if not password or len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"the password must have at least {MIN_PASSWORD_LENGTH} characters",
                      {"password": f"at least {MIN_PASSWORD_LENGTH} characters"})


def check_timezone(name):
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone {name!r}", {"timezone": "not an IANA time zone"}) from None
    return name


def get_user_by_email(session, email):
    return session.scalar(sa.select(User).where(User.email == email.strip().lower()))


def create_user(session, *, email, password, role="executive", name=None, teams=(), skills=None,
                capacity=20, timezone="UTC"):
    email = normalise_email(email)
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}", {"role": f"must be one of {', '.join(ROLES)}"})
    check_password_rules(password)
    check_timezone(timezone)
    if get_user_by_email(session, email):
        raise Conflict(f"a user with email {email} already exists", {"email": "already taken"})
    team_objs = []
    for team_name in teams:
        team = session.scalar(sa.select(Team).where(Team.name == team_name))
        if team is None:
            raise NotFound(f"no team named {team_name!r}", {"team": "no such team"})
        team_objs.append(team)
    user = User(email=email, name=name or email.split("@")[0].replace(".", " ").title(), role=role,
                timezone=timezone, capacity=capacity, skills=list(skills if skills is not None else TYPES))
    user.set_password(password)
    user.teams = team_objs
    session.add(user)
    session.flush()
    return user


def authenticate(session, email, password):
    """The user for these credentials, or None. Always hashes, so timing does not reveal accounts."""
    user = get_user_by_email(session, email or "")
    if user is None:
        User(password_hash="").set_password(password or "x")
        return None
    if not user.is_active or not user.check_password(password or ""):
        return None
    return user


def user_for_session_id(session, session_id):
    """Resolve a login cookie id ("<user id>:<nonce>"); a rotated nonce means the session has ended."""
    try:
        user_id, nonce = session_id.split(":", 1)
        user = session.get(User, int(user_id))
    except (ValueError, AttributeError):
        return None
    if user is None or not secrets.compare_digest(user.session_nonce, nonce) or not user.is_active:
        return None
    return user


def end_all_sessions(user):
    user.rotate_session_nonce()


def change_password(session, user, current_password, new_password):
    if not user.check_password(current_password or ""):
        raise Invalid("the current password is not correct", {"current_password": "not correct"})
    check_password_rules(new_password)
    user.set_password(new_password)
    end_all_sessions(user)  # the caller logs the current session in again with the new nonce
    session.flush()


def issue_api_token(session, user, name="cli"):
    """Create a token and return it in clear; only its hash is kept."""
    token = "bd_" + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name, token_hash=ApiToken.hash(token)))
    session.flush()
    return token


def user_for_token(session, token, now=None):
    if not token:
        return None
    row = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == ApiToken.hash(token),
                                                   ApiToken.revoked_at.is_(None)))
    if row is None or not row.user.is_active:
        return None
    row.last_used_at = now or utcnow()
    return row.user
