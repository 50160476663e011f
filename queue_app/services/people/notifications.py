"""Internal notifications to staff: one Notification row per person, in their in-app list, and mailed
as they chose for its kind: now, in a daily digest, or not at all (or not even listed: off).

Invariants: the row is written in the caller's transaction and the mail job is recorded
with dispatch.enqueue_after_commit, so a rolled-back change notifies nobody, and a
notification whose job Redis lost is still on record to be sent by the relay. A digest
mails each waiting row once: the digest job claims the rows before it sends.
"""
from datetime import timedelta

import sqlalchemy as sa

from queue_app.db.outbox import enqueue_after_commit
from queue_app.models import Notification
from queue_app.models.base import utcnow
from queue_app.services.errors import Invalid

SEND_JOB = "workers.mail_out.send_notification"
DIGEST_JOB = "workers.mail_out.send_digest"
# What a person can choose for, in the order the settings page lists them, and what they get until they do.
KINDS = {
    "assigned": "An item is assigned to me",
    "sla": "SLA warnings and breaches on my items or my teams'",
    "approval": "An approval waits for me",
    "reply": "The customer replied on my item",
    "other": "Anything else (watched items, notices)",
}
CHANNELS = {"email": "Email now", "digest": "Daily digest", "in_app": "In the app only", "off": "Off"}
DEFAULTS = {"assigned": "email", "sla": "email", "approval": "email", "reply": "in_app", "other": "in_app"}
DIGEST_AFTER = timedelta(hours=24)
PAGE = 50


def channel_for(user, kind):
    prefs = user.notification_prefs or {}
    return prefs.get(kind) or DEFAULTS.get(kind, "email")


def preferences_of(user):
    return {kind: channel_for(user, kind) for kind in KINDS}


def set_preferences(session, user, choices):
    """Save {kind: channel}; kinds left out keep what they had."""
    errors = {kind: "unknown kind" for kind in choices if kind not in KINDS}
    errors.update({kind: f"must be one of {', '.join(CHANNELS)}" for kind, channel in choices.items()
                   if kind in KINDS and channel not in CHANNELS})
    if errors:
        raise Invalid("the notification settings were not saved", errors)
    user.notification_prefs = {**(user.notification_prefs or {}), **choices}
    session.flush()
    return preferences_of(user)


def notify(session, item, users, subject, body, now, kind="other"):
    """Notify each of `users` (Users, once each) about `item` as they chose for `kind`; returns the
    addresses of those notified (not those who turned the kind off), sorted."""
    recipients = {user.email: user for user in users if user is not None}
    told = []
    for email, user in sorted(recipients.items()):
        channel = channel_for(user, kind)
        if channel == "off":
            continue
        status = {"email": "queued", "digest": "digest"}.get(channel, "in_app")
        note = Notification(work_item_id=item.id, user_id=user.id, to_address=email, subject=subject, body=body,
                            created_at=now, kind=kind, send_status=status)
        session.add(note)
        session.flush()
        if status == "queued":
            enqueue_after_commit(session, SEND_JOB, note.id)
        told.append(email)
    return told


# --- the in-app list ------------------------------------------------------------------------------

def unread_count(session, user):
    return session.scalar(sa.select(sa.func.count()).select_from(Notification)
                          .where(Notification.user_id == user.id, Notification.read_at.is_(None)))


def list_for(session, user, *, before=None, limit=PAGE):
    """The person's notifications, newest first, `limit` at a time (keyset on id)."""
    query = sa.select(Notification).where(Notification.user_id == user.id)
    if before is not None:
        query = query.where(Notification.id < before)
    return session.scalars(query.order_by(Notification.id.desc()).limit(limit)).all()


def mark_read(session, user, ids=None, now=None):
    """Mark the person's notifications read (all of them without `ids`); returns how many changed."""
    query = sa.update(Notification).where(Notification.user_id == user.id, Notification.read_at.is_(None))
    if ids is not None:
        query = query.where(Notification.id.in_(list(ids)))
    return session.execute(query.values(read_at=now or utcnow())).rowcount


# --- the daily digest -----------------------------------------------------------------------------

def enqueue_digests(session, now=None):
    """A digest job for each person whose oldest waiting notification is a day old; returns how many."""
    now = now or utcnow()
    user_ids = session.scalars(
        sa.select(Notification.user_id).where(Notification.send_status == "digest",
                                              Notification.user_id.is_not(None))
        .group_by(Notification.user_id).having(sa.func.min(Notification.created_at) <= now - DIGEST_AFTER)).all()
    for user_id in user_ids:
        enqueue_after_commit(session, DIGEST_JOB, user_id)
    return len(user_ids)


def claim_digest(session, user_id):
    """The person's waiting rows, claimed for one digest in one UPDATE (a second job claims none), oldest first."""
    claimed = session.scalars(
        sa.update(Notification).where(Notification.user_id == user_id, Notification.send_status == "digest")
        .values(send_status="sending", sent_at=utcnow()).returning(Notification.id)).all()
    if not claimed:
        return []
    return session.scalars(sa.select(Notification).where(Notification.id.in_(claimed))
                           .order_by(Notification.id)).all()
