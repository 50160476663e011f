"""Administration: people, teams, SLA calendars and policies, routing rules, mailboxes, mail
field patterns, checklists, the email quarantine and the audit trail. Admins only."""
from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from queue_app.admin import views  # noqa: E402,F401
from queue_app.admin import people, routing, sla  # noqa: E402,F401
from queue_app.admin import audit, canned, mail_fields  # noqa: E402,F401
from queue_app.admin import checklists  # noqa: E402,F401
