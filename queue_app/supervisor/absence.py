"""Out of office and availability: an executive (or their supervisor, or an admin) sets an absence
and can move the open items in the same action; supervisors see who is available in their teams
and press "distribute now".

Times are entered in the viewer's own time zone and stored in UTC.
"""
from datetime import timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from wtforms import DateTimeLocalField, RadioField, SubmitField
from wtforms.validators import InputRequired, Optional

from queue_app.extensions import db
from queue_app.models import Team, User
from queue_app.models.base import utcnow
from queue_app.services import access
from queue_app.services.assignment import auto as assignment_auto
from queue_app.services.assignment import board, capacity
from queue_app.services.errors import DomainError
from queue_app.services.people import users
from queue_app.supervisor import bp
from queue_app.web.actions import flash_form_errors, me
from queue_app.web.forms import Form
from queue_app.web.navigation import safe_next

LOCAL_FORMAT = "%Y-%m-%dT%H:%M"
ITEM_CHOICES = [("keep", "Keep them assigned"), ("queue", "Return them to the team's unassigned queue"),
                ("policy", "Give them to colleagues by the team's auto-assignment")]


class AbsenceForm(Form):
    start = DateTimeLocalField("Away from", format=LOCAL_FORMAT, validators=[InputRequired(message="Enter a time.")])
    until = DateTimeLocalField("Back on", format=LOCAL_FORMAT, validators=[Optional()],
                               description="Empty: until the absence is cleared.")
    items = RadioField("Open items", choices=ITEM_CHOICES, default="keep")
    submit = SubmitField("Save absence")


class RedistributeForm(Form):
    # Its own ids: the absence form on the same page has an `items` field too (items-0, items-1, ...).
    items = RadioField("Move the open items", choices=ITEM_CHOICES[1:], default="queue", id="move-items")
    submit = SubmitField("Move them now")


class ActionForm(Form):
    """A button that only needs its CSRF token."""


def viewer_zone():
    try:
        return ZoneInfo(current_user.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def to_utc(local):
    return local.replace(tzinfo=viewer_zone()).astimezone(timezone.utc) if local else None


def to_local(instant):
    return instant.astimezone(viewer_zone()).replace(tzinfo=None) if instant else None


def person_or_404(user_id):
    person = db.session.get(User, user_id)
    if person is None or not users.can_manage_person(me(), person):
        abort(404)
    return person


def open_count(person):
    return capacity.open_loads(db.session, [person.id])[person.id]


@bp.route("/absence")
@login_required
def my_absence():
    return redirect(url_for("supervisor.absence", user_id=current_user.id))


@bp.route("/people/<int:user_id>/absence", methods=["GET", "POST"])
@login_required
def absence(user_id):
    person = person_or_404(user_id)
    if request.method == "POST":
        form = AbsenceForm()
    else:
        form = AbsenceForm(start=to_local(person.out_of_office_from or utcnow()).replace(second=0, microsecond=0),
                           until=to_local(person.out_of_office_until))
    if form.validate_on_submit():
        try:
            result = assignment_auto.go_out_of_office(db.session, person, me(), start=to_utc(form.start.data),
                                                 until=to_utc(form.until.data), items=form.items.data)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            for key, problem in exc.fields.items():
                field = form._fields.get(key)
                if field is not None:
                    field.errors = list(field.errors) + [problem[:1].upper() + problem[1:] + "."]
            flash(exc.message[:1].upper() + exc.message[1:] + ".", "error")
        else:
            flash(f"{person.name} is out of office from {form.start.data:%Y-%m-%d %H:%M}"
                  f"{f' until {form.until.data:%Y-%m-%d %H:%M}' if form.until.data else ''}."
                  + (f" {moved(result)}" if result else ""), "success")
            return redirect(url_for("supervisor.absence", user_id=person.id))
    elif form.is_submitted():
        flash("Please correct the marked fields.", "error")
    status = 422 if form.is_submitted() else 200
    return render_template("supervisor/absence.html", person=person, form=form, action_form=ActionForm(),
                           redistribute_form=RedistributeForm(), open_items=open_count(person),
                           away=person.is_out_of_office(utcnow())), status


def moved(result):
    parts = []
    if result["assigned"]:
        parts.append(f"{len(result['assigned'])} given to colleagues")
    if result["queued"]:
        parts.append(f"{len(result['queued'])} returned to the queue")
    if result["kept"]:
        parts.append(f"{result['kept']} of other teams left as they were")
    return ("Open items: " + ", ".join(parts) + ".") if parts else "There were no open items to move."


@bp.route("/people/<int:user_id>/absence/clear", methods=["POST"])
@login_required
def clear_absence(user_id):
    person = person_or_404(user_id)
    form = ActionForm()
    if form.validate_on_submit():
        users.clear_absence(db.session, person, actor=me())
        db.session.commit()
        flash(f"{person.name} is back: auto-assignment may give them work again.", "success")
    else:
        flash_form_errors(form)
    return redirect(url_for("supervisor.absence", user_id=person.id))


@bp.route("/people/<int:user_id>/redistribute", methods=["POST"])
@login_required
def redistribute(user_id):
    person = person_or_404(user_id)
    form = RedistributeForm()
    if form.validate_on_submit():
        try:
            result = assignment_auto.redistribute(db.session, person, me(), utcnow(), mode=form.items.data)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message[:1].upper() + exc.message[1:] + ".", "error")
        else:
            flash(moved(result), "success")
    else:
        flash_form_errors(form)
    return redirect(url_for("supervisor.absence", user_id=person.id))


@bp.route("/people")
@login_required
def people():
    """Who is available in my teams, their load and absences, and "distribute now" per team."""
    access.require_role(current_user, "supervisor", "admin")
    teams = board.managed_teams(db.session, me())
    return render_template("supervisor/absence_people.html", teams=teams,
                           rows=board.team_load(db.session, teams, utcnow()), form=ActionForm(),
                           policies=assignment_auto.POLICY_LABELS)


@bp.route("/teams/<int:team_id>/distribute", methods=["POST"])
@login_required
def distribute(team_id):
    """Assign the team's unassigned items now, most urgent first, by its auto-assign policy."""
    team = db.session.get(Team, team_id)
    if team is None or not access.manages_team(me(), team.id):
        abort(404)
    form = ActionForm()
    if form.validate_on_submit():
        try:
            done = assignment_auto.distribute(db.session, team, me(), utcnow())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message[:1].upper() + exc.message[1:] + ".", "error")
        else:
            if done:
                flash(f"{len(done)} item{'s' if len(done) != 1 else ''} of {team.name} assigned.", "success")
            else:
                flash(f"Nothing assigned: {team.name} has no unassigned item someone available can take.", "info")
    else:
        flash_form_errors(form)
    return redirect(safe_next(request.form.get("next"), "supervisor.people"))
