"""The front-office intake form: anyone signed in can file work for the back office."""
from flask import Blueprint

bp = Blueprint("intake", __name__)

from queue_app.intake import views  # noqa: E402,F401
