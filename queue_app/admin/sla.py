"""Admin pages for SLA calendars and policies: the rules of `flask sla load`, through forms.

Saving goes through services.sla.editing (which hands the values to services.sla.config.load_config),
so open items are recalculated after commit whenever something changed.
"""
import json

from flask import flash, redirect, render_template, request, url_for

from queue_app.admin import bp
from queue_app.admin.forms import ActionForm, CalendarForm, PolicyForm, timezone_choices
from queue_app.admin.people import get_or_404, invalid_form, page, save
from queue_app.extensions import db
from queue_app.models import Calendar, SlaPolicy
from queue_app.models.calendar import WEEKDAYS
from queue_app.models.sla_policy import DEFAULT_PAUSE_STATUSES
from queue_app.services.errors import Invalid
from queue_app.services.sla import editing
from queue_app.web.actions import flash_form_errors, me


@bp.route("/sla")
def sla_overview():
    return render_template("admin/sla.html", calendars=editing.list_calendars(db.session),
                           policies=editing.list_policies(db.session), action_form=ActionForm())


# --- calendars ----------------------------------------------------------------------------------

def calendar_form(calendar=None):
    if request.method == "POST":
        form = CalendarForm()
    elif calendar is not None:
        hours = calendar.hours or {}
        form = CalendarForm(obj=calendar)  # then the fields whose data is not the attribute as it is
        form.closed_dates.data = "\n".join(str(d) for d in calendar.closed_dates or [])
        for day in WEEKDAYS:
            form[f"hours_{day}"].data = ", ".join(hours.get(day) or [])
    else:
        form = CalendarForm(**{f"hours_{day}": "09:00-17:00" for day in WEEKDAYS[:5]})
    form.timezone.choices = timezone_choices()
    return form


def save_calendar(form, calendar):
    def action():
        editing.save_calendar(
            db.session, calendar, name=form.name.data, timezone=form.timezone.data,
            hours={day: form[f"hours_{day}"].data for day in WEEKDAYS},
            holiday_country=form.holiday_country.data, holiday_subdivision=form.holiday_subdivision.data,
            closed_dates=form.closed_dates.data, actor=me())

    return save(form, action)


@bp.route("/sla/calendars/new", methods=["GET", "POST"])
def calendar_new():
    form = calendar_form()
    if form.validate_on_submit():
        if save_calendar(form, None):
            flash(f"Calendar {form.name.data.strip()} added.", "success")
            return redirect(url_for("admin.sla_overview"))
    else:
        invalid_form(form)
    return page("admin/calendar_edit.html", form, calendar=None, weekdays=WEEKDAYS)


@bp.route("/sla/calendars/<int:calendar_id>", methods=["GET", "POST"])
def calendar_edit(calendar_id):
    calendar = get_or_404(Calendar, calendar_id)
    form = calendar_form(calendar)
    if form.validate_on_submit():
        if save_calendar(form, calendar):
            flash(f"Calendar {calendar.name} saved; open items' due times are recalculated.", "success")
            return redirect(url_for("admin.sla_overview"))
    else:
        invalid_form(form)
    return page("admin/calendar_edit.html", form, calendar=calendar, weekdays=WEEKDAYS)


# --- policies -----------------------------------------------------------------------------------

def policy_form(policy=None):
    if request.method == "POST":
        form = PolicyForm()
    elif policy is not None:
        form = PolicyForm(obj=policy)  # then the fields whose data is not the attribute as it is
        form.match_type.data = policy.match_type or ""
        form.match_priority.data = policy.match_priority or ""
        form.match_team.data = policy.team.name if policy.team else ""
        form.calendar.data = policy.calendar.name if policy.calendar else ""
        form.pause_statuses.data = list(policy.pause_statuses or [])
        form.escalation.data = json.dumps(policy.escalation, indent=2) if policy.escalation else ""
    else:
        form = PolicyForm(pause_statuses=list(DEFAULT_PAUSE_STATUSES))
    form.match_team.choices = [("", "Any team")] + [(n, n) for n in editing.team_names(db.session)]
    form.calendar.choices = [("", "The team's calendar")] + [(c.name, c.name) for c in
                                                             editing.list_calendars(db.session)]
    return form


def save_policy(form, policy):
    def action():
        editing.save_policy(
            db.session, policy, name=form.name.data, match_type=form.match_type.data or None,
            match_priority=form.match_priority.data or None, match_team=form.match_team.data or None,
            calendar=form.calendar.data or None, first_response_minutes=form.first_response_minutes.data,
            resolution_minutes=form.resolution_minutes.data, warn_at_percent=form.warn_at_percent.data,
            pause_statuses=form.pause_statuses.data, escalation=editing.parse_escalation(form.escalation.data),
            actor=me())

    return save(form, action)


@bp.route("/sla/policies/new", methods=["GET", "POST"])
def policy_new():
    form = policy_form()
    if form.validate_on_submit():
        if save_policy(form, None):
            flash(f"Policy {form.name.data.strip()} added; open items' due times are recalculated.", "success")
            return redirect(url_for("admin.sla_overview"))
    else:
        invalid_form(form)
    return page("admin/policy_edit.html", form, policy=None)


@bp.route("/sla/policies/<int:policy_id>", methods=["GET", "POST"])
def policy_edit(policy_id):
    policy = get_or_404(SlaPolicy, policy_id)
    form = policy_form(policy)
    if form.validate_on_submit():
        if save_policy(form, policy):
            flash(f"Policy {policy.name} saved and active; open items' due times are recalculated.", "success")
            return redirect(url_for("admin.sla_overview"))
    else:
        invalid_form(form)
    return page("admin/policy_edit.html", form, policy=policy)


@bp.route("/sla/policies/<int:policy_id>/active", methods=["POST"])
def policy_active(policy_id):
    policy = get_or_404(SlaPolicy, policy_id)
    form = ActionForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(url_for("admin.sla_overview"))
    wanted = request.form.get("active") == "1"
    try:
        editing.set_policy_active(db.session, policy, wanted, actor=me())
        db.session.commit()
    except Invalid as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        flash(f"Policy {policy.name} is {'active' if wanted else 'switched off'}; open items' due times are "
              "recalculated.", "success")
    return redirect(url_for("admin.sla_overview"))
