"""Sign-in, sign-out and personal settings; also the login cookie loader."""
from flask import Blueprint

from queue_app.extensions import db, login_manager
from queue_app.services.people import users

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(session_id):
    """The cookie holds "<user id>:<nonce>", so a rotated nonce ends the session on the server."""
    return users.user_for_session_id(db.session, session_id)


@bp.record_once
def _configure_login(state):
    login_manager.login_message = "Please sign in to see this page."
    login_manager.login_message_category = "info"


from queue_app.auth import views  # noqa: E402,F401
