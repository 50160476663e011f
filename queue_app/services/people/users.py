"""People: accounts, passwords, sessions and API tokens; their teams, skills, capacity and absences.

Every change to an account (role, teams, skills, capacity, whether it may sign in, its password),
every API token issued and every sign-in, failed sign-in, lockout and sign-out is recorded in the
audit trail (services.audit.record), secrets masked.

Each signed-in browser is a UserSession row: signing out ends that row only, and a row idle
longer than SESSION_IDLE_MINUTES or older than SESSION_MAX_HOURS no longer signs anyone in.
"""
import re
import secrets
from datetime import timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import selectinload
from werkzeug.security import check_password_hash

from queue_app.models import Team, User, UserSession
from queue_app.models.base import utcnow
from queue_app.models.user import ROLES, SERVICE
from queue_app.models.work_item import TYPES
from queue_app.services.audit import record as audit
from queue_app.services.errors import Conflict, Invalid, NotFound
from queue_app.services.people import mfa, tokens
from queue_app.settings import SessionSettings

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


def email_key(email):
    """The email tried, as sign-in throttling counts it: normalised, or just trimmed and lower case."""
    try:
        return normalise_email(email)
    except Invalid:
        return (email or "").strip().lower()


def get_user_by_email(session, email):
    return session.scalar(sa.select(User).where(User.email == email.strip().lower()))


def account(user):
    """What the audit trail records of an account (services.audit.record.snapshot)."""
    extra = {"intake_teams": [t.name for t in user.intake_teams]} if user.is_service else {}
    return audit.snapshot(user, ("email", "name", "role", "skills", "capacity", "timezone"),
                          teams=[t.name for t in user.teams], active=bool(user.is_active_user), **extra)


def _teams_named(session, names):
    found = []
    for team_name in names:
        team = session.scalar(sa.select(Team).where(Team.name == team_name))
        if team is None:
            raise NotFound(f"no team named {team_name!r}", {"team": "no such team"})
        found.append(team)
    return found


def create_user(session, *, email, password=None, role="executive", name=None, teams=(), skills=None,
                capacity=20, timezone="UTC", active=True, actor=None):
    """A person's account. Without `password` it has none anyone knows: they choose theirs from an
    invitation (services.people.account_links.invite)."""
    email = normalise_email(email)
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}", {"role": f"must be one of {', '.join(ROLES)}"})
    if password is None:
        password = secrets.token_urlsafe(32)
    else:
        check_password_rules(password)
    check_timezone(timezone)
    check_capacity(capacity)
    if get_user_by_email(session, email):
        raise Conflict(f"a user with email {email} already exists", {"email": "already taken"})
    team_objs = _teams_named(session, teams)
    user = User(email=email, name=name or email.split("@")[0].replace(".", " ").title(), role=role,
                timezone=timezone, capacity=capacity, skills=list(skills if skills is not None else TYPES))
    user.set_password(password)
    user.teams = team_objs
    user.is_active_user = bool(active)
    session.add(user)
    session.flush()
    audit.changed(session, actor, "user", user, None, {**account(user), "password": audit.Secret(user.password_hash)})
    return user


def create_service_account(session, *, name, teams, actor=None):
    """A partner system's account: no usable password, never the web, tokens only; it may file
    items for `teams` (not a member of them: it gets no work and sees no queue)."""
    name = (name or "").strip()
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug or len(name) > MAX_NAME:
        raise Invalid("a service account needs a name (letters or digits)", {"name": "is required"})
    if not teams:
        raise Invalid("a service account needs at least one team to file items for", {"team": "is required"})
    email = f"{slug}@service.invalid"  # unique like any account's; .invalid never receives mail
    if get_user_by_email(session, email):
        raise Conflict(f"a service account named {name!r} already exists", {"name": "already taken"})
    user = User(email=email, name=name, role=SERVICE, capacity=0, skills=[], timezone="UTC")
    user.set_password(secrets.token_urlsafe(32))  # nobody knows it, and the web refuses the role anyway
    user.intake_teams = _teams_named(session, dict.fromkeys(teams))
    session.add(user)
    session.flush()
    audit.changed(session, actor, "user", user, None, account(user))
    return user


def authenticate(session, email, password):
    """The user for these credentials, or None. Always hashes, so timing does not reveal accounts."""
    return _check_credentials(session, email, password)[0]


@lru_cache(maxsize=1)
def _dummy_hash():
    """A hash made the way users' are, checked when no account has the email, so that costs the same."""
    probe = User(password_hash="")
    probe.set_password(secrets.token_hex(16))
    return probe.password_hash


def _check_credentials(session, email, password):
    """(the user signing in or None, why not or None, the account of that email or None).

    The password is hashed once whatever the account: against the account's hash, or a dummy one
    when there is none; whether the account is active is looked at only after that.
    """
    user = get_user_by_email(session, email or "")
    password_ok = check_password_hash(user.password_hash if user is not None else _dummy_hash(), password or "")
    if user is None:
        return None, "no such account", None
    if not password_ok:
        return None, "wrong password", user
    if not user.is_active:
        return None, "account inactive", user
    if user.is_service:
        return None, "service account", user  # the login page says what it says for a wrong password
    return user, None, user


def sign_in(session, email, password, *, remote_addr=None, now=None):
    """`authenticate`, with the attempt recorded in the audit trail: the email tried, never the password.

    When a second step follows (services.people.mfa.second_step: a code, or enrolment first), the
    right password is recorded as sign_in_password; the sign-in itself only once that step is done.
    """
    user, reason, account_user = _check_credentials(session, email, password)
    details = {"remote_addr": remote_addr}
    if user is None:
        audit.security_event(session, "anonymous", "sign_in_failed", account_user, email=(email or "").strip().lower(),
                             details={**details, "email": (email or "").strip()[:audit.MAX_LABEL], "reason": reason},
                             now=now)
        return None
    step = mfa.second_step(session, user)
    if step is not None:
        audit.security_event(session, user, "sign_in_password", user, email=user.email,
                             details={**details, "second_step": step}, now=now)
        return user
    audit.security_event(session, user, "sign_in", user, email=user.email, details=details, now=now)
    return user


def finish_enrolment_sign_in(session, user, *, remote_addr=None, now=None):
    """Record the sign-in of someone who set up two-step sign-in as its second step (their role requires it)."""
    audit.security_event(session, user, "sign_in", user, email=user.email,
                         details={"remote_addr": remote_addr, "second_step": "enrolment"}, now=now)


def record_lockout(session, email, *, scope, until, remote_addr=None, now=None):
    """Sign-in is refused from now to `until` for this email (scope "account") or this address ("address")."""
    tried = (email or "").strip()
    audit.security_event(session, "anonymous", "sign_in_locked", get_user_by_email(session, tried), email=tried.lower(),
                         details={"email": tried[:audit.MAX_LABEL], "scope": scope, "until": until,
                                  "remote_addr": remote_addr}, now=now)


# --- browser sessions ------------------------------------------------------------------------

LAST_SEEN_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often


def start_session(session, user, *, user_agent="", remote_addr="", now=None):
    """Record a newly signed-in browser; returns the key that browser keeps (only its hash is stored)."""
    now = now or utcnow()
    key = secrets.token_urlsafe(32)
    session.add(UserSession(user_id=user.id, key_hash=UserSession.hash(key), created_at=now, last_seen_at=now,
                            user_agent=(user_agent or "")[:255], remote_addr=(remote_addr or "")[:64]))
    session.flush()
    return key


def session_for_key(session, user, key):
    if not key:
        return None
    return session.scalar(sa.select(UserSession).where(UserSession.key_hash == UserSession.hash(key),
                                                       UserSession.user_id == user.id))


def check_session(session, user, key, *, now=None):
    """(the browser's session, None) while it may go on, else (None, "ended" | "idle" | "expired").

    A session that may go on has its last_seen_at moved to now, at most once a minute.
    """
    now = now or utcnow()
    settings = SessionSettings.current()
    row = session_for_key(session, user, key)
    if row is None or row.ended_at is not None:
        return None, "ended"
    if now - row.created_at >= timedelta(hours=settings.max_hours):
        row.ended_at = now
        return None, "expired"
    if now - row.last_seen_at >= timedelta(minutes=settings.idle_minutes):
        row.ended_at = now
        return None, "idle"
    if now - row.last_seen_at >= LAST_SEEN_EVERY:
        row.last_seen_at = now
    return row, None


def active_sessions(session, user, *, now=None):
    """The user's browsers still signed in, newest first."""
    now = now or utcnow()
    settings = SessionSettings.current()
    rows = session.scalars(sa.select(UserSession).where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
                           .order_by(UserSession.created_at.desc(), UserSession.id.desc())).all()
    return [row for row in rows if now - row.created_at < timedelta(hours=settings.max_hours)
            and now - row.last_seen_at < timedelta(minutes=settings.idle_minutes)]


def sign_out(session, user, key, *, now=None):
    """End this browser's session only, recorded in the audit trail."""
    now = now or utcnow()
    row = session_for_key(session, user, key)
    if row is not None and row.ended_at is None:
        row.ended_at = now
    audit.security_event(session, user, "sign_out", user, email=user.email, now=now)


def sign_out_everywhere(session, user, *, now=None):
    """End every session of the user, on every browser, recorded in the audit trail."""
    end_all_sessions(session, user, now=now)
    audit.security_event(session, user, "sign_out", user, email=user.email, details={"everywhere": True}, now=now)


def user_for_session_id(session, session_id):
    """Resolve a login cookie id ("<user id>:<nonce>"); a rotated nonce means the session has ended."""
    try:
        user_id, nonce = session_id.split(":", 1)
        user = session.get(User, int(user_id))
    except (ValueError, AttributeError):
        return None
    if user is None or not secrets.compare_digest(user.session_nonce, nonce) or not user.is_active:
        return None
    if user.is_service:
        return None
    return user


def end_all_sessions(session, user, *, keep_key=None, now=None):
    """End the user's browser sessions (but the one of `keep_key`) and rotate the nonce every login cookie holds."""
    user.rotate_session_nonce()
    query = sa.update(UserSession).where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
    if keep_key:
        query = query.where(UserSession.key_hash != UserSession.hash(keep_key))
    session.execute(query.values(ended_at=now or utcnow()), execution_options={"synchronize_session": "fetch"})


def change_password(session, user, current_password, new_password, *, keep_session_key=None):
    """Change one's own password; every other session ends (the one of `keep_session_key` stays)."""
    if not user.check_password(current_password or ""):
        raise Invalid("the current password is not correct", {"current_password": "not correct"})
    check_password_rules(new_password)
    before = audit.Secret(user.password_hash)
    user.set_password(new_password)
    end_all_sessions(session, user, keep_key=keep_session_key)  # the caller logs in again with the new nonce
    session.flush()
    audit.changed(session, user, "user", user, {"password": before}, {"password": audit.Secret(user.password_hash)},
                  action="password_changed")


def issue_api_token(session, user, name="cli", *, scopes=None, actor=None):
    """Create a token and return it in clear; only its hash is kept (services.people.tokens)."""
    return tokens.issue(session, user, name, scopes=scopes, actor=actor)[1]


def user_for_token(session, token, now=None):
    """The owner of a usable token (not revoked, not expired, account active), or None."""
    row, _problem = tokens.check(session, token, now)
    return row.user if row is not None else None


# --- administration: editing people, their teams, skills and capacity ------------------------

MAX_CAPACITY = 1000
MAX_NAME = 120


def check_capacity(capacity):
    if isinstance(capacity, bool) or not isinstance(capacity, int) or not 0 <= capacity <= MAX_CAPACITY:
        raise Invalid(f"capacity must be a whole number from 0 to {MAX_CAPACITY}",
                      {"capacity": f"a whole number from 0 to {MAX_CAPACITY}"})
    return capacity


def list_users(session):
    return session.scalars(sa.select(User).options(selectinload(User.teams))
                           .order_by(User.is_active_user.desc(), User.name, User.id)).all()


def update_user(session, user, *, actor, name, role, team_ids, skills, capacity, timezone, active):
    """Change a person's details, role, teams, skills, capacity and whether they may sign in.

    All fields are checked before anything changes. An admin cannot take away their own
    admin role or deactivate themselves (nobody would be left to undo it). Deactivating
    someone ends their sessions and revokes their API tokens for good; their open items stay
    assigned until someone moves them.
    """
    errors = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = "is required"
    elif len(name) > MAX_NAME:
        errors["name"] = f"at most {MAX_NAME} characters"
    if user.is_service != (role == SERVICE):
        errors["role"] = "a service account stays one, and a person cannot become one"
    elif role not in ROLES and role != SERVICE:
        errors["role"] = f"must be one of {', '.join(ROLES)}"
    unknown_skills = [s for s in skills if s not in TYPES]
    if unknown_skills:
        errors["skills"] = f"unknown work types: {', '.join(map(str, unknown_skills))}"
    for key, check, value in (("capacity", check_capacity, capacity), ("timezone", check_timezone, timezone)):
        try:
            check(value)
        except Invalid as exc:
            errors[key] = exc.fields.get(key, exc.message)
    teams = session.scalars(sa.select(Team).where(Team.id.in_(list(team_ids)))).all() if team_ids else []
    if len(teams) != len(set(team_ids)):
        errors["teams"] = "no such team"
    if actor is not None and actor.id == user.id:
        if role != "admin" and user.role == "admin":
            errors["role"] = "you cannot take away your own admin role"
        if not active:
            errors["active"] = "you cannot deactivate yourself"
    if errors:
        raise Invalid(f"cannot save {user.email}", errors)
    before = account(user)
    was_active = user.is_active_user
    user.name = name
    user.role = role
    if user.is_service:
        user.intake_teams = sorted(teams, key=lambda t: t.name)  # the teams it files items for
    else:
        user.teams = sorted(teams, key=lambda t: t.name)
    user.skills = [t for t in TYPES if t in skills]
    user.capacity = capacity
    user.timezone = timezone
    user.is_active_user = bool(active)
    if was_active and not user.is_active_user:
        end_all_sessions(session, user)
        tokens.revoke_all(session, user, actor=actor)  # for good: reactivating brings none back
    session.flush()
    audit.changed(session, actor, "user", user, before, account(user))
    return user


def reset_password(session, user, new_password, *, actor=None, keep_session_key=None):
    """An admin sets a new password; every session of the user ends (but the admin's own, for their own)."""
    check_password_rules(new_password)
    before = audit.Secret(user.password_hash)
    user.set_password(new_password)
    end_all_sessions(session, user, keep_key=keep_session_key)
    session.flush()
    audit.changed(session, actor, "user", user, {"password": before}, {"password": audit.Secret(user.password_hash)},
                  action="password_changed")


def reset_mfa(session, user, *, actor, now=None):
    """An admin removes someone's two-step sign-in (a lost phone): every session of theirs ends, and
    they set it up again (at their next sign-in, if their role requires it). Recorded."""
    if user.is_service:
        raise Invalid("a service account never signs in to the web", {"user": "service account"})
    mfa.turn_off(session, user, actor=actor, now=now)
    end_all_sessions(session, user, now=now)
    session.flush()


def can_manage_person(actor, user):
    """Who may set someone's absence: themselves, a supervisor of one of their teams, an admin."""
    if actor.id == user.id or actor.role == "admin":
        return True
    return actor.role == "supervisor" and bool(actor.team_ids & user.team_ids)


def set_absence(session, user, *, actor, start, until, now=None):
    """Mark `user` out of office from `start` until `until` (None: until cleared).

    Out of office, nobody auto-assigns them work; what they already have stays with them
    until redistributed (services.assignment.redistribute).
    """
    now = now or utcnow()
    if not can_manage_person(actor, user):
        raise NotFound("no such person in your teams")
    errors = {}
    for key, value in (("start", start), ("until", until)):
        if value is not None and value.tzinfo is None:
            errors[key] = "needs a time zone"
    if start is None:
        errors["start"] = "is required"
    if not errors and until is not None:
        if until <= start:
            errors["until"] = "must be after the start"
        elif until <= now:
            errors["until"] = "is already past"
    if errors:
        raise Invalid("invalid absence", errors)
    user.out_of_office_from = start
    user.out_of_office_until = until
    session.flush()
    return user


def clear_absence(session, user, *, actor):
    if not can_manage_person(actor, user):
        raise NotFound("no such person in your teams")
    user.out_of_office_from = None
    user.out_of_office_until = None
    session.flush()
    return user
