"""Links mailed to set a password: "forgot password" resets and invitations of new people.

- A link is single-use and expires (PASSWORD_RESET_MINUTES, INVITATION_DAYS). Its token is never
  stored: the row keeps a random salt, the token is an HMAC of it under the app's secret key (so
  the mail job can write the link without the token ever sitting in a table), and the row is found
  by the token's SHA-256.
- The mail goes through the transactional outbox like every mail (workers.mail_out.send_account_link):
  recorded with the link, sent after commit, at most once. The link row is its mail record.
- Asking for a reset answers the same whether or not the address belongs to an active person; only
  then is a link made and mailed. Both are recorded in the audit trail (the email asked for).
- Using a reset link ends every session of the person and revokes their API tokens; their other
  unused links die with it. An invitation is accepted the same way, by choosing a password.
"""
import base64
import hashlib
import hmac
import secrets
from datetime import timedelta

import sqlalchemy as sa

from queue_app.db.outbox import enqueue_after_commit
from queue_app.models import AccountLink
from queue_app.models.base import utcnow
from queue_app.services.audit import record as audit
from queue_app.services.errors import Invalid, NotFound
from queue_app.services.people import tokens, users
from queue_app.settings import AccountSettings

SEND_JOB = "workers.mail_out.send_account_link"
RESET = "password_reset"
INVITATION = "invitation"
# Where a link's page is: the routes of queue_app.auth must match.
PATHS = {RESET: "/password/reset/", INVITATION: "/invitation/"}


class LinkUnusable(NotFound):
    """The link is unknown, expired or already used; `reason` says which, for the page."""

    def __init__(self, reason):
        self.reason = reason
        super().__init__({"unknown": "This link is not valid.",
                          "expired": "This link has expired.",
                          "used": "This link has already been used."}[reason])


def _token(link, key):
    digest = hmac.new(key.encode(), f"{link.purpose}:{link.id}:{link.salt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def _link_record(link):
    return {"user": link.user.email, "purpose": link.purpose, "expires_at": link.expires_at,
            "token": audit.Secret(link.token_hash)}


def _make_link(session, user, purpose, *, actor, now):
    settings = AccountSettings.current()
    lifetime = timedelta(minutes=settings.reset_minutes) if purpose == RESET else \
        timedelta(days=settings.invitation_days)
    link = AccountLink(user_id=user.id, user=user, purpose=purpose, salt=secrets.token_hex(16), to_address=user.email,
                       token_hash="", created_at=now, expires_at=now + lifetime)
    session.add(link)
    session.flush()  # the id is part of the token
    link.token_hash = _hash(_token(link, settings.link_key))
    session.flush()
    enqueue_after_commit(session, SEND_JOB, link.id)
    audit.changed(session, actor, "account_link", link, None, _link_record(link),
                  label=f"{purpose.replace('_', ' ')} for {user.email}", now=now)
    return link


def _drop_unused_links(session, user, purpose=None):
    """The person's unused links (of `purpose`, or all) stop working; a mail not sent yet is not sent."""
    query = sa.delete(AccountLink).where(AccountLink.user_id == user.id, AccountLink.used_at.is_(None))
    if purpose is not None:
        query = query.where(AccountLink.purpose == purpose)
    session.execute(query, execution_options={"synchronize_session": "fetch"})


# --- password reset ------------------------------------------------------------------------------

def request_reset(session, email, *, remote_addr=None, now=None):
    """Mail a reset link if `email` is an active person's; otherwise do nothing more than record the
    request. Returns nothing: the caller must answer the same either way."""
    now = now or utcnow()
    user = users.get_user_by_email(session, users.email_key(email))
    sent = user is not None and user.is_active and not user.is_service
    if sent:
        _make_link(session, user, RESET, actor="anonymous", now=now)
    audit.security_event(session, "anonymous", "password_reset_requested", user if sent else None,
                         email=users.email_key(email),
                         details={"email": (email or "").strip()[:audit.MAX_LABEL], "remote_addr": remote_addr,
                                  "link_sent": sent}, now=now)


# --- invitations ---------------------------------------------------------------------------------

def invite(session, *, actor, now=None, **account):
    """Add a person without a password (services.people.users.create_user) and mail them an invitation
    to choose one; an inactive account gets its invitation when it is resent after reactivation."""
    now = now or utcnow()
    user = users.create_user(session, password=None, actor=actor, **account)
    if user.is_active:
        _make_link(session, user, INVITATION, actor=actor, now=now)
    return user


def resend_invitation(session, user, *, actor, now=None):
    """A new invitation for someone who has not accepted theirs; the earlier links stop working."""
    now = now or utcnow()
    if not user.is_active or user.is_service:
        raise Invalid(f"{user.email} cannot sign in; reactivate the account first", {"user": "inactive"})
    if not invitation_pending(session, user):
        raise Invalid(f"{user.email} has already chosen a password", {"user": "accepted"})
    _drop_unused_links(session, user, INVITATION)
    return _make_link(session, user, INVITATION, actor=actor, now=now)


def invitation_pending(session, user):
    """The person was invited and has not chosen their password yet (their link may have expired)."""
    used = sa.func.count(AccountLink.used_at)
    invited, accepted = session.execute(sa.select(sa.func.count(), used).where(
        AccountLink.user_id == user.id, AccountLink.purpose == INVITATION)).one()
    return invited > 0 and accepted == 0


def latest_invitation(session, user):
    return session.scalar(sa.select(AccountLink).where(AccountLink.user_id == user.id,
                                                       AccountLink.purpose == INVITATION)
                          .order_by(AccountLink.id.desc()).limit(1))


# --- following a link ----------------------------------------------------------------------------

def link_for(session, purpose, token, *, now=None):
    """The usable link of `purpose` this token names, or LinkUnusable saying why not."""
    now = now or utcnow()
    link = session.scalar(sa.select(AccountLink).where(AccountLink.token_hash == _hash(token or ""),
                                                       AccountLink.purpose == purpose)) if token else None
    if link is None or not link.user.is_active or link.user.is_service:
        raise LinkUnusable("unknown")
    if link.used_at is not None:
        raise LinkUnusable("used")
    if now >= link.expires_at:
        raise LinkUnusable("expired")
    return link


def set_password(session, purpose, token, new_password, *, now=None):
    """Set the password through a link; returns the user. The link and every other unused one of theirs
    die; every session of theirs ends, and after a reset their API tokens are revoked."""
    now = now or utcnow()
    link = link_for(session, purpose, token, now=now)
    users.check_password_rules(new_password)
    user = link.user
    # Claim the link in one UPDATE, so two posts of the same link cannot both set a password.
    claimed = session.execute(sa.update(AccountLink).where(AccountLink.id == link.id, AccountLink.used_at.is_(None))
                              .values(used_at=now), execution_options={"synchronize_session": "fetch"}).rowcount
    if claimed != 1:
        raise LinkUnusable("used")
    _drop_unused_links(session, user)
    before = audit.Secret(user.password_hash)
    user.set_password(new_password)
    users.end_all_sessions(session, user, now=now)
    if purpose == RESET:
        tokens.revoke_all(session, user, actor=user, now=now)
    session.flush()
    audit.changed(session, user, "user", user, {"password": before}, {"password": audit.Secret(user.password_hash)},
                  action="password_reset" if purpose == RESET else "invitation_accepted", now=now)
    return user


# --- the mail ------------------------------------------------------------------------------------

def mail_for(link):
    """(to, subject, body) of a link's mail, the link written out from BASE_URL."""
    settings = AccountSettings.current()
    url = f"{settings.base_url}{PATHS[link.purpose]}{_token(link, settings.link_key)}"
    name = link.user.name
    if link.purpose == RESET:
        return (link.to_address, "Reset your Backdesk password",
                f"Hello {name},\n\nsomeone asked to reset the password of your Backdesk account. To choose a new "
                f"password, open this link within {settings.reset_minutes} minutes:\n\n{url}\n\n"
                "The link works once. Choosing a new password signs you out everywhere and ends your API tokens.\n"
                "If you did not ask for this, ignore this mail: your password stays as it is.\n")
    return (link.to_address, "You are invited to Backdesk",
            f"Hello {name},\n\nyou have an account on Backdesk ({link.to_address}). To choose your password and "
            f"sign in, open this link within {settings.invitation_days} days:\n\n{url}\n\n"
            "The link works once. If it has expired, ask an administrator to send a new one.\n")
