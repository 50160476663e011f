"""Canned responses: supervisors keep their own teams' responses, admins all of them (global ones too).

These are the only admin pages supervisors reach (marked open_to_supervisors); every
route checks the role here and each response's team in services.items.canned_responses.
"""
import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from wtforms import BooleanField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length

from queue_app.admin import bp
from queue_app.admin.forms import ActionForm
from queue_app.admin.people import invalid_form, page, save
from queue_app.admin.views import open_to_supervisors
from queue_app.extensions import db
from queue_app.models import Team
from queue_app.services.items import canned_responses
from queue_app.services.items.canned_responses import MAX_BODY, MAX_TITLE, PLACEHOLDERS
from queue_app.web.actions import flash_form_errors, me
from queue_app.web.forms import Form

ALL_TEAMS = 0  # the team select's value for "every team" (stored as NULL)


class CannedResponseForm(Form):
    title = StringField("Title", validators=[DataRequired(message="Give the response a title."),
                                             Length(max=MAX_TITLE)],
                        description="What executives pick from the list, e.g. “Refund approved”.")
    team = SelectField("Available to", coerce=int)
    body = TextAreaField("Text", validators=[DataRequired(message="Write the text."), Length(max=MAX_BODY)],
                         description="Placeholders in braces are filled in for each item; the executive "
                                     "can edit the text before sending.")
    active = BooleanField("Active", default=True, description="Inactive responses are not offered on items.")
    submit = SubmitField("Save response")


def team_choices():
    if current_user.role == "admin":
        teams = db.session.scalars(sa.select(Team).order_by(Team.name)).all()
        return [(ALL_TEAMS, "All teams")] + [(t.id, t.name) for t in teams]
    return [(t.id, t.name) for t in sorted(current_user.teams, key=lambda t: t.name)]


def canned_form(response=None):
    if request.method == "POST":
        form = CannedResponseForm()
    elif response is not None:
        form = CannedResponseForm(obj=response)
        form.team.data = response.team_id or ALL_TEAMS
    else:
        form = CannedResponseForm()
    form.team.choices = team_choices()
    return form


def save_response(form, response):
    return save(form, lambda: canned_responses.save(
        db.session, response, actor=me(), title=form.title.data, body=form.body.data,
        team_id=form.team.data or None, active=form.active.data))


def edit_page(form, response):
    return page("admin/canned_edit.html", form, response=response, placeholders=PLACEHOLDERS)


@bp.route("/canned")
@open_to_supervisors
@login_required
def canned_list():
    canned_responses.require_management_role(current_user)
    return render_template("admin/canned.html", responses=canned_responses.list_manageable(db.session, me()),
                           placeholders=PLACEHOLDERS)


@bp.route("/canned/new", methods=["GET", "POST"])
@open_to_supervisors
@login_required
def canned_new():
    canned_responses.require_management_role(current_user)
    form = canned_form()
    if form.validate_on_submit():
        if save_response(form, None):
            flash(f"Canned response “{form.title.data.strip()}” added.", "success")
            return redirect(url_for("admin.canned_list"))
    else:
        invalid_form(form)
    return edit_page(form, None)


@bp.route("/canned/<int:response_id>", methods=["GET", "POST"])
@open_to_supervisors
@login_required
def canned_edit(response_id):
    canned_responses.require_management_role(current_user)
    response = canned_responses.get_manageable(db.session, me(), response_id)
    form = canned_form(response)
    if form.validate_on_submit():
        if save_response(form, response):
            flash(f"Canned response “{response.title}” saved.", "success")
            return redirect(url_for("admin.canned_list"))
    else:
        invalid_form(form)
    return edit_page(form, response)


@bp.route("/canned/<int:response_id>/delete", methods=["POST"])
@open_to_supervisors
@login_required
def canned_delete(response_id):
    canned_responses.require_management_role(current_user)
    response = canned_responses.get_manageable(db.session, me(), response_id)
    form = ActionForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(url_for("admin.canned_edit", response_id=response.id))
    title = response.title
    canned_responses.delete(db.session, response, actor=me())
    db.session.commit()
    flash(f"Canned response “{title}” deleted.", "success")
    return redirect(url_for("admin.canned_list"))
