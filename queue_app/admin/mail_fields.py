"""Admin pages for a team's mail field patterns: how fields are found in its incoming mail, with a
"try it" box that shows what a pasted subject and body would give. Admins only, as every admin page."""
import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from wtforms import BooleanField, IntegerField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional

from queue_app.admin import bp
from queue_app.admin.forms import ActionForm
from queue_app.admin.people import get_or_404, invalid_form, page, save
from queue_app.extensions import db
from queue_app.models import Team
from queue_app.models.work_item import TYPES
from queue_app.services.errors import NotFound
from queue_app.services.intake import mail_field_patterns, mail_fields
from queue_app.services.items.work_types import FIELDS
from queue_app.web.actions import flash_form_errors, me
from queue_app.web.forms import Form
from queue_app.web.templating import label


class MailFieldPatternForm(Form):
    field = SelectField("Field", choices=[(name, label(name)) for name in mail_fields.EXTRACTABLE_FIELDS])
    pattern = TextAreaField("Regular expression", validators=[Length(max=mail_field_patterns.MAX_PATTERN)],
                            render_kw={"class": "code", "spellcheck": "false"},
                            description="With exactly one capture group, the value to take; matched without "
                                        "regard to case. For example (?:order|Auftrag)\\s*#?\\s*(\\d{6}).")
    position = IntegerField("Position", default=100, validators=[InputRequired(message="Enter a number.")],
                            description="Lower is listed and tried first.")
    active = BooleanField("Active", default=True,
                          description="A field with no active pattern of the team uses the default patterns.")
    submit = SubmitField("Save pattern")


class TryForm(Form):
    work_type = SelectField("Work type", choices=[(t, label(t)) for t in TYPES], default="return")
    subject = StringField("Subject", validators=[Optional(), Length(max=1000)])
    body = TextAreaField("Body", validators=[Optional(), Length(max=mail_fields.MAX_SCAN)])
    submit = SubmitField("Try it")


def teams():
    return db.session.scalars(sa.select(Team).order_by(Team.name)).all()


def list_page(team, try_form=None, found=None, status=200):
    form = try_form or TryForm(formdata=None)
    tried = [spec.name for spec in FIELDS.get(form.work_type.data, ()) if spec.name in mail_fields.EXTRACTABLE_FIELDS]
    return render_template("admin/mail_fields.html", form=form, team=team, teams=teams(),
                           patterns=mail_field_patterns.list_patterns(db.session, team.id),
                           defaults=mail_fields.DEFAULT_PATTERNS, found=found, tried=tried), status


@bp.route("/mail-fields")
def mail_field_list():
    """The first team's patterns, or the one asked for (?team=<id>)."""
    team_id = request.args.get("team", type=int)
    team = db.session.get(Team, team_id) if team_id else next(iter(teams()), None)
    if team is None:
        if team_id:
            abort(404)
        flash("Create a team first.", "error")
        return redirect(url_for("admin.team_list"))
    return list_page(team)


@bp.route("/mail-fields/<int:team_id>/try", methods=["POST"])
def mail_field_try(team_id):
    team = get_or_404(Team, team_id)
    form = TryForm()
    if not form.validate_on_submit():
        invalid_form(form)
        return list_page(team, form, status=422)
    found = mail_field_patterns.try_patterns(db.session, team, form.work_type.data, form.subject.data,
                                             form.body.data)
    return list_page(team, form, found)


def pattern_form(pattern=None):
    if request.method == "POST":
        return MailFieldPatternForm()
    return MailFieldPatternForm(obj=pattern) if pattern is not None else MailFieldPatternForm()


def get_pattern(team, pattern_id):
    try:
        return mail_field_patterns.get_pattern(db.session, team.id, pattern_id)
    except NotFound:
        abort(404)


def save_pattern(form, team, pattern):
    return save(form, lambda: mail_field_patterns.save_pattern(
        db.session, team, pattern, field=form.field.data, regex=form.pattern.data, active=form.active.data,
        position=form.position.data, actor=me()))


@bp.route("/mail-fields/<int:team_id>/new", methods=["GET", "POST"])
def mail_field_new(team_id):
    team = get_or_404(Team, team_id)
    form = pattern_form()
    if form.validate_on_submit():
        if save_pattern(form, team, None):
            flash(f"Pattern for {label(form.field.data)} added to {team.name}.", "success")
            return redirect(url_for("admin.mail_field_list", team=team.id))
    else:
        invalid_form(form)
    return page("admin/mail_field_edit.html", form, team=team, pattern=None)


@bp.route("/mail-fields/<int:team_id>/<int:pattern_id>", methods=["GET", "POST"])
def mail_field_edit(team_id, pattern_id):
    team = get_or_404(Team, team_id)
    pattern = get_pattern(team, pattern_id)
    form = pattern_form(pattern)
    if form.validate_on_submit():
        if save_pattern(form, team, pattern):
            flash(f"Pattern for {label(pattern.field)} saved.", "success")
            return redirect(url_for("admin.mail_field_list", team=team.id))
    else:
        invalid_form(form)
    return page("admin/mail_field_edit.html", form, team=team, pattern=pattern, action_form=ActionForm())


@bp.route("/mail-fields/<int:team_id>/<int:pattern_id>/deactivate", methods=["POST"])
def mail_field_deactivate(team_id, pattern_id):
    team = get_or_404(Team, team_id)
    pattern = get_pattern(team, pattern_id)
    form = ActionForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(url_for("admin.mail_field_edit", team_id=team.id, pattern_id=pattern.id))
    mail_field_patterns.deactivate(db.session, pattern, actor=me())
    db.session.commit()
    flash(f"Pattern for {label(pattern.field)} switched off.", "success")
    return redirect(url_for("admin.mail_field_list", team=team.id))

