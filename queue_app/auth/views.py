"""Sign in (throttled), sign out here or everywhere, and personal settings."""
import logging

from flask import flash, redirect, render_template, request, url_for
from flask import session as browser
from flask_login import current_user, login_required, login_user, logout_user

from queue_app.auth import bp
from queue_app.auth.forms import LoginForm, PasswordForm, TimezoneForm
from queue_app.extensions import db
from queue_app.services.errors import DomainError, Invalid
from queue_app.services.people import tokens, users
from queue_app.settings import TokenSettings
from queue_app.web import signin_limits
from queue_app.web.actions import me
from queue_app.web.browser_sessions import SESSION_KEY, current_key
from queue_app.web.forms import ApiTokenForm, RevokeTokenForm
from queue_app.web.navigation import safe_next

log = logging.getLogger(__name__)

LOGIN_FAILED = "Unknown email or wrong password."


def _locked_out_page(message):
    """The sign-in page an attempt during a lockout gets (with 429): the password was not checked."""
    return render_template("auth/login.html", form=LoginForm(), next_url=request.args.get("next"),
                           lockout_message=message)


def _begin_browser_session(user):
    """Sign this browser in as `user`: a new server-side session, its key kept in the Flask session."""
    key = users.start_session(db.session, user, user_agent=request.user_agent.string, remote_addr=request.remote_addr)
    db.session.commit()
    browser.clear()  # nothing of the signed-out browser carries over
    login_user(user)
    browser[SESSION_KEY] = key


def _lockouts_started():
    try:
        return signin_limits.lockouts_started()
    except Exception:  # the counts are unreadable (Redis just went down): the failure still counts
        log.warning("could not read the sign-in limits to record a lockout", exc_info=True)
        return []


@bp.route("/login", methods=["GET", "POST"])
@signin_limits.failed_sign_ins_limited(page=_locked_out_page)
def login():
    form = LoginForm()
    next_url = request.args.get("next")
    if form.validate_on_submit():
        user = users.sign_in(db.session, form.email.data, form.password.data, remote_addr=request.remote_addr)
        if user is not None:
            _begin_browser_session(user)  # commits the attempt's audit entry too
            return redirect(safe_next(next_url))
        signin_limits.count_failure()
        for scope, until in _lockouts_started():
            users.record_lockout(db.session, form.email.data, scope=scope, until=until,
                                 remote_addr=request.remote_addr)
        db.session.commit()  # the attempt's audit entry
    if form.is_submitted():
        flash(LOGIN_FAILED, "error")
    return render_template("auth/login.html", form=form, next_url=next_url)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign this browser out; the person's other sessions go on."""
    users.sign_out(db.session, current_user._get_current_object(), current_key())
    db.session.commit()
    logout_user()
    browser.pop(SESSION_KEY, None)
    flash("You are signed out.", "success")
    return redirect(url_for("auth.login"))


@bp.route("/logout/everywhere", methods=["POST"])
@login_required
def logout_everywhere():
    """End every session of this person, on every browser and device (this one too)."""
    users.sign_out_everywhere(db.session, current_user._get_current_object())
    db.session.commit()
    logout_user()
    browser.pop(SESSION_KEY, None)
    flash("You are signed out on every device.", "success")
    return redirect(url_for("auth.login"))


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def settings():
    tz_form = TimezoneForm(timezone=current_user.timezone)
    pw_form = PasswordForm()
    if "save_timezone" in request.form and tz_form.validate_on_submit():
        try:
            current_user.timezone = users.check_timezone(tz_form.timezone.data)
        except Invalid as exc:
            tz_form.timezone.errors.append(exc.fields.get("timezone", exc.message))
        else:
            db.session.commit()
            flash(f"Times are now shown in {current_user.timezone}.", "success")
            return redirect(url_for("auth.settings"))
    elif "change_password" in request.form and pw_form.validate_on_submit():
        try:
            users.change_password(db.session, current_user, pw_form.current_password.data, pw_form.new_password.data,
                                  keep_session_key=current_key())
        except Invalid as exc:
            db.session.rollback()
            for name, problem in exc.fields.items():
                field = pw_form._fields.get("new_password" if name == "password" else name)
                if field is not None:
                    field.errors.append(problem.capitalize())
        else:
            db.session.commit()
            login_user(current_user._get_current_object())  # this browser gets the rotated nonce; the others ended
            flash("Password changed. Your other sessions have been signed out.", "success")
            return redirect(url_for("auth.settings"))
    status = 422 if request.method == "POST" else 200
    this_session = users.session_for_key(db.session, current_user, current_key())
    return render_template("auth/settings.html", tz_form=tz_form, pw_form=pw_form,
                           browser_sessions=users.active_sessions(db.session, current_user),
                           this_session_id=this_session.id if this_session else None,
                           **api_token_block()), status


# --- API tokens: the settings page's block (templates/auth/_api_tokens.html) ---------------------

def api_token_block(form=None):
    """What the settings page's API tokens block shows."""
    return {"api_tokens": tokens.tokens_of(db.session, current_user), "token_form_obj": form or ApiTokenForm(),
            "revoke_form": RevokeTokenForm(), "token_days": TokenSettings.current().days,
            "token_revoke_url": lambda t: url_for("auth.revoke_token", token_id=t.id)}


@bp.route("/settings/tokens", methods=["POST"])
@login_required
def create_token():
    """Create one of your own tokens; its secret is on this response only."""
    form = ApiTokenForm()
    if form.validate_on_submit():
        try:
            row, secret = tokens.issue(db.session, me(), form.name.data, scopes=form.scopes.data, actor=me())
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
        else:
            db.session.commit()
            return render_template("auth/token_created.html", token=row, secret=secret,
                                   back_url=url_for("auth.settings") + "#api-tokens"), 201
    else:
        for problems in form.errors.values():
            flash(" ".join(problems), "error")
    return redirect(url_for("auth.settings") + "#api-tokens")


@bp.route("/settings/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke_token(token_id):
    """Revoke one of your own tokens (anyone else's is not found)."""
    if RevokeTokenForm().validate_on_submit():
        row = tokens.get_token(db.session, token_id, owner=me())
        tokens.revoke(db.session, row, actor=me())
        db.session.commit()
        flash(f"The token {row.name} is revoked.", "success")
    else:
        flash("The form expired; please try again.", "error")
    return redirect(url_for("auth.settings") + "#api-tokens")
