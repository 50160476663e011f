"""Sign in (throttled; with a second step for two-step sign-in), sign out here or everywhere, and
personal settings.

Between a right password and the second step (a code, or setting up two-step sign-in when the
role requires it), the browser is not signed in: its Flask session holds only who is half-way and
until when (SIGN_IN_CODE_MINUTES). No page or API call counts that as signed in.
"""
import logging
import time
from datetime import timedelta

import segno
from flask import flash, g, make_response, redirect, render_template, request, url_for
from flask import session as browser
from flask_login import current_user, login_required, login_user, logout_user

from queue_app.auth import bp
from queue_app.auth.notifications import settings_block as notification_settings_block
from queue_app.auth.forms import CodeForm, LoginForm, PasswordForm, TimezoneForm
from queue_app.extensions import db
from queue_app.services.errors import DomainError, Invalid
from queue_app.services.people import mfa, tokens, users
from queue_app.settings import AccountSettings, TokenSettings
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


def _count_failed_sign_in(email):
    """A wrong password or code: counted against the limits, a lockout it starts recorded."""
    signin_limits.count_failure()
    for scope, until in _lockouts_started():
        users.record_lockout(db.session, email, scope=scope, until=until, remote_addr=request.remote_addr)


@bp.route("/login", methods=["GET", "POST"])
@signin_limits.failed_sign_ins_limited(page=_locked_out_page)
def login():
    form = LoginForm()
    next_url = request.args.get("next")
    if form.validate_on_submit():
        user = users.sign_in(db.session, form.email.data, form.password.data, remote_addr=request.remote_addr)
        if user is not None:
            step = mfa.second_step(db.session, user)
            if step is not None:
                db.session.commit()  # the right password's audit entry
                _begin_second_step(user, step, next_url)
                return redirect(url_for("auth.sign_in_code" if step == mfa.CODE else "auth.sign_in_enrol"))
            _begin_browser_session(user)  # commits the attempt's audit entry too
            return redirect(safe_next(next_url))
        _count_failed_sign_in(form.email.data)
        db.session.commit()  # the attempt's audit entry
    if form.is_submitted():
        flash(LOGIN_FAILED, "error")
    return render_template("auth/login.html", form=form, next_url=next_url)


# --- the second step: a code, or setting up two-step sign-in first -----------------------------------

PENDING = "sign_in_pending"
TOO_SLOW = "That took too long. Please sign in again."


def _begin_second_step(user, step, next_url):
    """Remember, in this browser only, who gave the right password and until when the next step may come."""
    logout_user()
    browser.clear()
    until = time.time() + timedelta(minutes=AccountSettings.current().code_minutes).total_seconds()
    browser[PENDING] = {"user": user.get_id(), "step": step, "until": until, "next": next_url}


def _pending_user(step):
    """The user half-way through signing in with `step` to take, or None (none, another step, too late,
    or the account changed since: its sessions were ended, its two-step sign-in reset)."""
    if "pending_user" in g:
        return g.pending_user
    pending = browser.get(PENDING)
    user = None
    if isinstance(pending, dict) and pending.get("step") == step:
        if time.time() < float(pending.get("until") or 0):
            user = users.user_for_session_id(db.session, pending.get("user"))
        else:
            flash(TOO_SLOW, "info")
    if user is None:
        browser.pop(PENDING, None)
    g.pending_user = user
    return user


def _pending_email():
    """The account a code is for, as the sign-in limits count it."""
    pending = browser.get(PENDING)
    step = pending.get("step") if isinstance(pending, dict) else None
    user = _pending_user(step) if step else None
    return user.email if user is not None else ""


def _locked_out_code_page(message):
    return _private(render_template("auth/sign_in_code.html", form=CodeForm(), lockout_message=message))


def _private(body, status=200):
    """A page with a secret or a half-signed-in state on it: never kept by a cache."""
    response = make_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _finish_sign_in(user):
    next_url = (browser.get(PENDING) or {}).get("next")
    _begin_browser_session(user)  # commits; clears the half-way state
    return next_url


@bp.route("/login/code", methods=["GET", "POST"])
@signin_limits.failed_sign_ins_limited(page=_locked_out_code_page, email=_pending_email)
def sign_in_code():
    """The second step: a code from the authenticator app, or a recovery code."""
    user = _pending_user(mfa.CODE)
    if user is None:
        return redirect(url_for("auth.login"))
    form = CodeForm()
    if form.validate_on_submit():
        factor = mfa.complete_sign_in(db.session, user, form.code.data, remote_addr=request.remote_addr)
        if factor is not None:
            left = mfa.recovery_codes_left(db.session, user) if factor == "recovery_code" else None
            next_url = _finish_sign_in(user)
            if left is not None:
                flash(f"You signed in with a recovery code; {left} left. Make new ones in your settings "
                      "if you are running out.", "info" if left > 2 else "error")
            return redirect(safe_next(next_url))
        _count_failed_sign_in(user.email)
        db.session.commit()
        form.code.errors.append(mfa.WRONG_CODE)
    return _private(render_template("auth/sign_in_code.html", form=form))


def qr_image(uri):
    """The QR code of `uri` as an SVG data: address for an <img> (the CSP allows data: images)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


def enrolment_context(user):
    secret = mfa.start_enrolment(db.session, user)
    return {"qr": qr_image(mfa.enrolment_uri(user)), "key": mfa.grouped_key(secret)}


@bp.route("/login/enrol", methods=["GET", "POST"])
@signin_limits.failed_sign_ins_limited(page=_locked_out_code_page, email=_pending_email)
def sign_in_enrol():
    """Set up two-step sign-in before anything else: the user's role requires it."""
    user = _pending_user(mfa.ENROL)
    if user is None:
        return redirect(url_for("auth.login"))
    if user.has_mfa:  # set up meanwhile, in another browser
        browser[PENDING] = {**browser[PENDING], "step": mfa.CODE}
        return redirect(url_for("auth.sign_in_code"))
    form = CodeForm()
    if form.validate_on_submit():
        try:
            codes = mfa.confirm_enrolment(db.session, user, form.code.data)
        except Invalid as exc:
            db.session.rollback()
            form.code.errors.append(exc.fields.get("code", exc.message))
            _count_failed_sign_in(user.email)
        else:
            users.finish_enrolment_sign_in(db.session, user, remote_addr=request.remote_addr)
            next_url = _finish_sign_in(user)
            return _private(render_template("auth/recovery_codes.html", codes=codes, continue_url=safe_next(next_url),
                                            first_time=True))
    context = enrolment_context(user)
    db.session.commit()  # the secret, kept until confirmed
    return _private(render_template("auth/sign_in_enrol.html", form=form, **context))


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
                           mfa_required=mfa.is_required(db.session, current_user),
                           browser_sessions=users.active_sessions(db.session, current_user),
                           this_session_id=this_session.id if this_session else None,
                           **api_token_block(), **notification_settings_block()), status


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
