"""Two-step sign-in on the settings page: set it up (QR code and key, confirmed with a code), and make
new recovery codes. Turning it off is an admin's reset (a lost phone), which ends every session."""
from flask import flash, redirect, render_template, url_for
from flask_login import login_required

from queue_app.auth import bp
from queue_app.auth.forms import ButtonForm, CodeForm
from queue_app.auth.views import _private, enrolment_context
from queue_app.extensions import db
from queue_app.services.errors import Conflict, Invalid
from queue_app.services.people import mfa
from queue_app.web.actions import me


def _page(form=None, status=200):
    user = me()
    context = {}
    if not user.has_mfa and user.mfa_secret:  # set-up started: show it until confirmed
        context = enrolment_context(user)
    return _private(render_template("auth/two_step.html", form=form or CodeForm(), button=ButtonForm(),
                                    required=mfa.is_required(db.session, user),
                                    codes_left=mfa.recovery_codes_left(db.session, user) if user.has_mfa else 0,
                                    **context), status)


@bp.route("/settings/two-step")
@login_required
def two_step():
    return _page()


@bp.route("/settings/two-step/start", methods=["POST"])
@login_required
def two_step_start():
    """Make the secret to set up (or keep the one not confirmed yet) and show it."""
    if ButtonForm().validate_on_submit():
        try:
            mfa.start_enrolment(db.session, me())
        except Conflict as exc:
            db.session.rollback()
            flash(exc.message[:1].upper() + exc.message[1:] + ".", "error")
        else:
            db.session.commit()
    else:
        flash("The form expired; please try again.", "error")
    return redirect(url_for("auth.two_step"))


@bp.route("/settings/two-step/confirm", methods=["POST"])
@login_required
def two_step_confirm():
    """Switch it on with a code from the app; the recovery codes are shown on this response only."""
    form = CodeForm()
    if form.validate_on_submit():
        try:
            codes = mfa.confirm_enrolment(db.session, me(), form.code.data)
        except (Invalid, Conflict) as exc:
            db.session.rollback()
            form.code.errors.append(exc.fields.get("code", exc.message))
        else:
            db.session.commit()
            flash("Two-step sign-in is on.", "success")
            return _private(render_template("auth/recovery_codes.html", codes=codes,
                                            continue_url=url_for("auth.settings"), first_time=True))
    return _page(form, 422)


@bp.route("/settings/two-step/recovery-codes", methods=["POST"])
@login_required
def two_step_recovery_codes():
    """Ten new recovery codes, shown on this response only; the old ones stop working."""
    if not ButtonForm().validate_on_submit():
        flash("The form expired; please try again.", "error")
        return redirect(url_for("auth.two_step"))
    try:
        codes = mfa.regenerate_recovery_codes(db.session, me())
    except Conflict as exc:
        db.session.rollback()
        flash(exc.message[:1].upper() + exc.message[1:] + ".", "error")
        return redirect(url_for("auth.two_step"))
    db.session.commit()
    return _private(render_template("auth/recovery_codes.html", codes=codes, continue_url=url_for("auth.two_step"),
                                    first_time=False))
