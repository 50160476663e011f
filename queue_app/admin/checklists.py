"""Checklists: the steps each team works through on items of one work type. Admins only.

Steps are never deleted, only switched off, so the history of items ticked against them stays
readable; services.items.checklists holds the rules and records every change in the audit trail.
"""
import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for
from wtforms import BooleanField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length

from queue_app.admin import bp
from queue_app.admin.forms import ActionForm
from queue_app.admin.people import invalid_form, page, save
from queue_app.extensions import db
from queue_app.models import ChecklistStep, Team
from queue_app.models.work_item import TYPES
from queue_app.services.items import checklists
from queue_app.web.actions import attempt, flash_form_errors, me
from queue_app.web.forms import Form
from queue_app.web.templating import label


class ChecklistStepForm(Form):
    team = SelectField("Team", coerce=int)
    work_type = SelectField("Work type", choices=[(t, label(t)) for t in TYPES])
    text = StringField("Step", validators=[DataRequired(message="Write what the step is."),
                                           Length(max=checklists.MAX_TEXT)],
                       description="What the executive does, e.g. “Check the order in the shop system”.")
    mandatory = BooleanField("Mandatory", default=True,
                             description="An open mandatory step blocks resolving the item.")
    active = BooleanField("Active", default=True,
                          description="Inactive steps are not shown on items and block nothing.")
    submit = SubmitField("Save step")


def step_form(step=None):
    if request.method == "POST":
        form = ChecklistStepForm()
    elif step is not None:
        form = ChecklistStepForm(obj=step)
        form.team.data = step.team_id
    else:
        form = ChecklistStepForm(team=request.args.get("team", type=int), work_type=request.args.get("type"))
    form.team.choices = [(t.id, t.name) for t in db.session.scalars(sa.select(Team).order_by(Team.name))]
    return form


def save_step(form, step):
    return save(form, lambda: checklists.save_step(
        db.session, step, actor=me(), team_id=form.team.data, work_type=form.work_type.data, text=form.text.data,
        mandatory=form.mandatory.data, active=form.active.data))


@bp.route("/checklists")
def checklist_list():
    steps = db.session.scalars(sa.select(ChecklistStep).join(Team, ChecklistStep.team_id == Team.id)
                               .order_by(Team.name, ChecklistStep.work_type, ChecklistStep.position,
                                         ChecklistStep.id)).all()
    return render_template("admin/checklists.html", steps=steps, move_form=ActionForm())


@bp.route("/checklists/new", methods=["GET", "POST"])
def checklist_new():
    form = step_form()
    if form.validate_on_submit():
        if save_step(form, None):
            flash("Checklist step added.", "success")
            return redirect(url_for("admin.checklist_list"))
    else:
        invalid_form(form)
    return page("admin/checklist_edit.html", form, step=None)


@bp.route("/checklists/<int:step_id>", methods=["GET", "POST"])
def checklist_edit(step_id):
    step = checklists.get_step(db.session, step_id)
    form = step_form(step)
    if form.validate_on_submit():
        if save_step(form, step):
            flash("Checklist step saved.", "success")
            return redirect(url_for("admin.checklist_list"))
    else:
        invalid_form(form)
    return page("admin/checklist_edit.html", form, step=step)


@bp.route("/checklists/<int:step_id>/move/<any(up, down):direction>", methods=["POST"])
def checklist_move(step_id, direction):
    step = checklists.get_step(db.session, step_id)
    form = ActionForm()
    if form.validate_on_submit():
        attempt(lambda: checklists.move_step(db.session, step, actor=me(), up=direction == "up"))
    else:
        flash_form_errors(form)
    return redirect(url_for("admin.checklist_list"))
