"""What a check is: a function of a CheckContext returning a CheckOutcome, registered by name.

A check reads; it does not change the item. A check that wants something done about its
result (an escalation that becomes urgent) names it in the outcome's `data` and declares
an `apply` hook, which the runner calls once, when the result is first stored.
A check raises TransientCheckError when it could not decide for a passing reason (a
service down); the job is then retried with backoff. Any other exception is a bug and
is stored as an `error` result.
"""
from dataclasses import dataclass, field
from functools import cached_property

OUTCOME_STATUSES = ("passed", "warning", "failed", "error")


class TransientCheckError(Exception):
    """The check could not run now but may succeed later: retry the job."""


@dataclass
class CheckOutcome:
    status: str  # passed | warning | failed | error
    message: str
    data: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in OUTCOME_STATUSES:
            raise ValueError(f"unknown check status {self.status!r}")


@dataclass(frozen=True)
class CheckDefinition:
    name: str
    func: object
    # A failed mandatory check marks the item "needs attention"; other failures are advice.
    mandatory: bool = True
    title: str = ""
    apply: object = None  # apply(ctx, outcome) after the result is stored the first time

    @property
    def label(self):
        return self.title or self.name.replace("_", " ").capitalize()


class CheckContext:
    """What a check may look at: the item, the session for queries, `now`, the team's settings."""

    def __init__(self, session, item, now):
        self.session = session
        self.item = item
        self.now = now

    @cached_property
    def settings(self):
        from queue_app.services.checks.settings import settings_for

        return settings_for(self.session, self.item.team_id)

    @cached_property
    def attachments(self):
        """The item's files that may be documents: attachments that are not inline images of an email."""
        import sqlalchemy as sa
        from sqlalchemy.orm import selectinload

        from queue_app.models import Attachment, Message

        return self.session.scalars(
            sa.select(Attachment).join(Message, Attachment.message_id == Message.id)
            .where(Message.work_item_id == self.item.id, Attachment.is_inline.is_(False))
            .options(selectinload(Attachment.blob)).order_by(Attachment.id)).all()


REGISTRY = {}


def check(name, *, mandatory=True, title="", apply=None):
    """Register the decorated function as the check `name`."""

    def register(func):
        if name in REGISTRY:
            raise ValueError(f"check {name!r} is registered twice")
        REGISTRY[name] = CheckDefinition(name=name, func=func, mandatory=mandatory, title=title, apply=apply)
        return func

    return register
