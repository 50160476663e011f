"""The re-verification timer: opens the follow-up item a team asked for before a verified document
expires. The service claims the verdict, so a timer that runs twice opens one item."""
from queue_app.extensions import db
from queue_app.services.items import verification
from workers.context import job_context


@job_context
def open_reverification(verdict_id):
    new = verification.open_reverification(db.session, verdict_id)
    return new.ref if new is not None else "nothing to do"
