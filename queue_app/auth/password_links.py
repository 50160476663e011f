""""Forgot password" and the pages of the links mailed to set a password (reset, invitation)."""
from flask import flash, redirect, render_template, request, url_for

from queue_app.auth import bp
from queue_app.auth.forms import ForgotPasswordForm, NewPasswordForm
from queue_app.auth.views import _private
from queue_app.extensions import db
from queue_app.services.errors import Invalid
from queue_app.services.people import account_links
from queue_app.settings import AccountSettings
from queue_app.web import signin_limits

REQUESTED = ("If that address belongs to an account that can sign in, a link to choose a new password is on its "
             "way. It works once, within {minutes} minutes.")


def _too_many_page(message):
    return render_template("auth/forgot_password.html", form=ForgotPasswordForm(), lockout_message=message)


@bp.route("/password/forgot", methods=["GET", "POST"])
@signin_limits.reset_requests_limited(page=_too_many_page)
def forgot_password():
    """The same answer whether or not the address is anyone's: a link goes out only if it is."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        account_links.request_reset(db.session, form.email.data, remote_addr=request.remote_addr)
        db.session.commit()
        flash(REQUESTED.format(minutes=AccountSettings.current().reset_minutes), "success")
        return redirect(url_for("auth.login"))
    return render_template("auth/forgot_password.html", form=form), 422 if form.is_submitted() else 200


def _set_password_page(purpose, token, done_message):
    try:
        link = account_links.link_for(db.session, purpose, token)
    except account_links.LinkUnusable as exc:
        return _private(render_template("auth/link_unusable.html", message=exc.message, purpose=purpose),
                        404 if exc.reason == "unknown" else 410)
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            account_links.set_password(db.session, purpose, token, form.new_password.data)
        except account_links.LinkUnusable as exc:  # used meanwhile, by another post
            db.session.rollback()
            return _private(render_template("auth/link_unusable.html", message=exc.message, purpose=purpose), 410)
        except Invalid as exc:
            db.session.rollback()
            form.new_password.errors.append(exc.fields.get("password", exc.message).capitalize())
        else:
            db.session.commit()
            flash(done_message, "success")
            return redirect(url_for("auth.login"))
    return _private(render_template("auth/set_password.html", form=form, person=link.user, purpose=purpose),
                    422 if form.is_submitted() else 200)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token):
    return _set_password_page(account_links.RESET, token,
                              "Your password is changed and you are signed out everywhere. Sign in with the new one.")


@bp.route("/invitation/<token>", methods=["GET", "POST"])
def accept_invitation(token):
    return _set_password_page(account_links.INVITATION, token, "Your password is set. Welcome! Please sign in.")
