"""What every blueprint's views share: the signed-in user, commit-or-flash, form errors as flashes."""
from flask import flash
from flask_login import current_user
from sqlalchemy.orm.exc import StaleDataError

from queue_app.extensions import db
from queue_app.services.errors import Conflict, Invalid, PermissionDenied

STALE = "This item was changed by someone else while you were looking at it. Reload the page and try again."


def attempt(action, success=None, raise_forbidden=False):
    """Run a service call and commit; a refusal becomes a flash message, not an error page
    (unless raise_forbidden: then PermissionDenied goes on to the 403 page)."""
    try:
        action()
        db.session.commit()
    except (Invalid, Conflict, PermissionDenied) as exc:
        db.session.rollback()
        if raise_forbidden and isinstance(exc, PermissionDenied):
            raise
        flash(exc.message[:1].upper() + exc.message[1:], "error")
        return False
    except StaleDataError:
        db.session.rollback()
        flash(STALE, "error")
        return False
    if success:
        flash(success, "success")
    return True


def me():
    """The signed-in User itself (services compare and store it; a proxy would not do)."""
    return current_user._get_current_object()


def flash_form_errors(form):
    for field in form:
        for error in field.errors:
            flash(f"{field.label.text}: {error}" if field.label.text else error, "error")
