"""Administration: the email quarantine and the mailboxes we receive work for. Admins only."""
from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from queue_app.admin import views  # noqa: E402,F401
