"""Internal notifications to staff: one Notification row per person, mailed after commit.

Invariants: the row is written in the caller's transaction and the mail job is recorded
with dispatch.enqueue_after_commit, so a rolled-back change notifies nobody, and a
notification whose job Redis lost is still on record to be sent by the relay.
"""
from queue_app.db.outbox import enqueue_after_commit
from queue_app.models import Notification

SEND_JOB = "workers.mail_out.send_notification"


def notify(session, item, users, subject, body, now):
    """Notify each of `users` (Users, once each) about `item`; returns their addresses, sorted."""
    recipients = {user.email: user for user in users if user is not None}
    for email, user in sorted(recipients.items()):
        note = Notification(work_item_id=item.id, user_id=user.id, to_address=email, subject=subject, body=body,
                            created_at=now)
        session.add(note)
        session.flush()
        enqueue_after_commit(session, SEND_JOB, note.id)
    return sorted(recipients)
