"""Admin pages for routing rules: conditions on how an item arrived, what it is given, and the order."""
import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for

from queue_app.admin import bp
from queue_app.admin.forms import ActionForm, RoutingRuleForm
from queue_app.admin.people import get_or_404, invalid_form, page, save
from queue_app.extensions import db
from queue_app.models import RoutingRule, Team
from queue_app.services.intake import routing_rules
from queue_app.web.actions import flash_form_errors, me


@bp.route("/routing")
def rule_list():
    return render_template("admin/routing.html", rules=routing_rules.list_rules(db.session),
                           action_form=ActionForm())


def rule_form(rule=None):
    if request.method == "POST":
        form = RoutingRuleForm()
    elif rule is not None:
        form = RoutingRuleForm(obj=rule)  # then the fields whose data is not the attribute as it is
        for name in ("source", "match_type", "set_type", "set_priority"):
            form[name].data = getattr(rule, name) or ""
        form.set_team.data = rule.set_team_id or 0
        form.keywords.data = ", ".join(rule.keywords or [])
    else:
        form = RoutingRuleForm()
    form.set_team.choices = [(0, "Leave as is")] + [(t.id, t.name) for t in
                                                    db.session.scalars(sa.select(Team).order_by(Team.name))]
    return form


def save_rule(form, rule):
    def action():
        routing_rules.save_rule(
            db.session, rule, name=form.name.data, position=form.position.data, active=form.active.data,
            source=form.source.data or None, recipient=form.recipient.data, sender=form.sender.data,
            subject_contains=form.subject_contains.data, keywords=routing_rules.split_keywords(form.keywords.data),
            match_type=form.match_type.data or None, set_type=form.set_type.data or None,
            set_team_id=form.set_team.data or None, set_priority=form.set_priority.data or None, actor=me())

    return save(form, action)


@bp.route("/routing/new", methods=["GET", "POST"])
def rule_new():
    form = rule_form()
    if form.validate_on_submit():
        if save_rule(form, None):
            flash(f"Rule {form.name.data.strip()} added.", "success")
            return redirect(url_for("admin.rule_list"))
    else:
        invalid_form(form)
    return page("admin/rule_edit.html", form, rule=None)


@bp.route("/routing/<int:rule_id>", methods=["GET", "POST"])
def rule_edit(rule_id):
    rule = get_or_404(RoutingRule, rule_id)
    form = rule_form(rule)
    if form.validate_on_submit():
        if save_rule(form, rule):
            flash(f"Rule {rule.name} saved.", "success")
            return redirect(url_for("admin.rule_list"))
    else:
        invalid_form(form)
    return page("admin/rule_edit.html", form, rule=rule)


@bp.route("/routing/<int:rule_id>/delete", methods=["POST"])
def rule_delete(rule_id):
    rule = get_or_404(RoutingRule, rule_id)
    form = ActionForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(url_for("admin.rule_edit", rule_id=rule.id))
    name = rule.name
    routing_rules.delete_rule(db.session, rule, actor=me())
    db.session.commit()
    flash(f"Rule {name} deleted.", "success")
    return redirect(url_for("admin.rule_list"))
