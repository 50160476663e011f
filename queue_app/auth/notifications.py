"""The person's own notifications: the in-app list (the bell) and how each kind reaches them."""
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from queue_app.extensions import db
from queue_app.auth import bp
from queue_app.services.people import notifications
from queue_app.web.actions import attempt, me
from queue_app.web.forms import Form


@bp.route("/notifications")
@login_required
def notification_list():
    before = request.args.get("before", type=int)
    notes = notifications.list_for(db.session, me(), before=before)
    more = notes[-1].id if len(notes) == notifications.PAGE else None
    return render_template("auth/notifications.html", notes=notes, more=more, form=Form())


@bp.route("/notifications/read", methods=["POST"])
@login_required
def mark_notifications_read():
    """Mark one notification read (`id`), or all of them."""
    if Form().validate_on_submit():
        ids = [int(i) for i in request.form.getlist("id") if i.isdigit()] or None
        attempt(lambda: notifications.mark_read(db.session, me(), ids))
    return redirect(url_for("auth.notification_list"))


@bp.route("/settings/notifications", methods=["POST"])
@login_required
def save_notification_settings():
    if Form().validate_on_submit():
        choices = {kind: request.form.get(f"kind-{kind}") for kind in notifications.KINDS
                   if request.form.get(f"kind-{kind}")}
        attempt(lambda: notifications.set_preferences(db.session, me(), choices), success="Notification settings saved.")
    else:
        flash("The form expired; please try again.", "error")
    return redirect(url_for("auth.settings") + "#notifications")


def settings_block():
    """What the settings page's notifications block shows."""
    return {"notification_kinds": notifications.KINDS, "notification_channels": notifications.CHANNELS,
            "notification_prefs": notifications.preferences_of(current_user)}
