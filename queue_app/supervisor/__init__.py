"""The supervisor's view of their teams: the unassigned queue and each person's load."""
from flask import Blueprint

bp = Blueprint("supervisor", __name__, url_prefix="/supervisor")

from queue_app.supervisor import views  # noqa: E402,F401
from queue_app.supervisor import reports  # noqa: E402,F401
from queue_app.supervisor import absence  # noqa: E402,F401
