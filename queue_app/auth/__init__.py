"""Sign-in, sign-out and personal settings; also the login cookie loader and the session timeouts."""
from flask import Blueprint, flash, g, redirect, request
from flask import session as browser
from flask_login import current_user, login_url, logout_user

from queue_app.extensions import db, login_manager
from queue_app.services.people import users
from queue_app.settings import SessionSettings
from queue_app.web.browser_sessions import SESSION_KEY, current_key

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(session_id):
    """The cookie holds "<user id>:<nonce>", and the browser's session key must name a live session."""
    user = users.user_for_session_id(db.session, session_id)
    if user is None:
        g.session_ended = "ended"
        return None
    row, why = users.check_session(db.session, user, current_key())
    if row is None:
        g.session_ended = why
        return None
    return user


def ended_message(why):
    settings = SessionSettings.current()
    if why == "idle":
        return f"You were signed out after {settings.idle_minutes} minutes without activity. Please sign in again."
    if why == "expired":
        return f"You were signed out: a session lasts at most {settings.max_hours} hours. Please sign in again."
    return "This session has ended (signed out here or on another device). Please sign in again."


@bp.before_app_request
def _check_browser_session():
    """Sign out, with the reason, a browser whose session has ended, been idle too long or lasted too long."""
    if request.endpoint in (None, "static") or request.blueprint == "api" or "_user_id" not in browser:
        return None
    if current_user.is_authenticated:
        if db.session.dirty:  # last_seen_at moved (at most once a minute)
            db.session.commit()
        return None
    if db.session.dirty:  # the session just timed out: record when
        db.session.commit()
    message = ended_message(g.get("session_ended", "ended"))
    logout_user()
    browser.pop(SESSION_KEY, None)
    flash(message, "info")
    if request.endpoint == "auth.login":
        return None
    return redirect(login_url("auth.login", request.url))


@bp.record_once
def _configure_login(state):
    login_manager.login_message = "Please sign in to see this page."
    login_manager.login_message_category = "info"


from queue_app.auth import notifications, password_links, two_step, views  # noqa: E402,F401
