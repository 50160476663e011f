"""JSON API v1: token-authenticated, described by /api/v1/openapi.json.

Clients send a bearer token instead of a session cookie, so CSRF protection does not apply.
"""
from flask import Blueprint

from queue_app.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

from queue_app.api import auth, views  # noqa: E402,F401  (hooks and routes attach to bp)
