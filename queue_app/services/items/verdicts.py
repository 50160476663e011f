"""What the verifiers said about an item's documents, and the rule the gate applies with it:
a document verification is not resolved as verified while a mandatory check failed, unless a
supervisor overrode exactly those failures with a reason.

It sits below the gate (services.items.state imports it), so it only reads; the workspace's
actions live in services.items.verification.
"""
import sqlalchemy as sa

from queue_app.models import Attachment, CheckOverride, CheckResult, DocumentVerdict, Message

VERIFICATION = "document_verification"


def documents_of(session, item):
    """The item's files that are documents: not an email's inline images, nor the files of a
    sender who is not a participant (flagged for review)."""
    return session.scalars(
        sa.select(Attachment).join(Message, Attachment.message_id == Message.id)
        .where(Message.work_item_id == item.id, Attachment.is_inline.is_(False),
               Message.flagged_for_review.is_(False))
        .order_by(Attachment.id)).all()


def current_verdicts(session, item):
    """{attachment id: its latest DocumentVerdict}."""
    latest = sa.select(sa.func.max(DocumentVerdict.id)).where(DocumentVerdict.work_item_id == item.id) \
        .group_by(DocumentVerdict.attachment_id)
    rows = session.scalars(sa.select(DocumentVerdict).where(DocumentVerdict.id.in_(latest))).all()
    return {row.attachment_id: row for row in rows}


def failed_checks(session, item):
    """Names of the checks whose latest result on the item failed."""
    latest = sa.select(sa.func.max(CheckResult.id)).where(CheckResult.work_item_id == item.id) \
        .group_by(CheckResult.name)
    return sorted(session.scalars(sa.select(CheckResult.name).where(CheckResult.id.in_(latest),
                                                                    CheckResult.status == "failed")))


def latest_override(session, item):
    return session.scalar(sa.select(CheckOverride).where(CheckOverride.work_item_id == item.id)
                          .order_by(CheckOverride.id.desc()).limit(1))


def resolving_blocker(session, item):
    """Why resolving `item` now would pass failed mandatory checks as verified, or None.

    Resolving with a document rejected is a rejection and always allowed. needs_attention is the
    runner's word that a mandatory check failed; an override covers only the failures it names,
    so a check that fails later needs a new one."""
    if item.type != VERIFICATION or not item.needs_attention:
        return None
    if any(v.verdict == "rejected" for v in current_verdicts(session, item).values()):
        return None
    failed = failed_checks(session, item)
    override = latest_override(session, item)
    if override is not None and set(failed) <= set(override.checks):
        return None
    names = ", ".join(name.replace("_", " ") for name in failed) or "a mandatory check"
    return (f"{item.ref} cannot be resolved as verified while checks failed ({names}): reject the document, "
            f"fix the fields and run the checks again, or ask a supervisor to override with a reason")
