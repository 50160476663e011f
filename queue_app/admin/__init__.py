"""Administration: people, teams, SLA calendars and policies, routing rules, mailboxes, the
email quarantine and the audit trail. Admins only."""
from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from queue_app.admin import views  # noqa: E402,F401
from queue_app.admin import people, routing, sla  # noqa: E402,F401
from queue_app.admin import audit, canned  # noqa: E402,F401
