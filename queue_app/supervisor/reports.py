"""Reports pages and CSV exports under /supervisor/reports (supervisors: their teams; admins: all).

Views stay thin: parse the filter form, call services.reporting.reports, render tables and SVG charts
or stream CSV (queue_app.web.downloads: what Excel opens correctly, UTF-8 with a byte-order
mark, times in UTC as said in the header, cells that would start a formula made harmless).
"""
from datetime import timedelta

import sqlalchemy as sa
from flask import abort, render_template, request
from flask_login import current_user, login_required
from wtforms import SelectField, StringField
from wtforms.validators import Optional

from queue_app.extensions import db
from queue_app.models import User
from queue_app.models.base import utcnow
from queue_app.models.team import team_members
from queue_app.models.work_item import STATUSES, TYPES
from queue_app.services.errors import Invalid
from queue_app.services.reporting import reports as reporting_reports
from queue_app.supervisor import bp, charts
from queue_app.web.actions import me
from queue_app.web.downloads import csv_response
from queue_app.web.forms import Form
from queue_app.web.templating import label

BREACHES_ON_PAGE = 100
REPORTS = ("compliance", "backlog", "daily", "handling", "breaches")
# One report per page view: each is a pass over the period's items, so the page costs one.
REPORT_TABS = (("compliance", "SLA compliance"), ("backlog", "Backlog by age"), ("daily", "Created vs resolved"),
               ("handling", "Handling time"), ("breaches", "Breaches"))


class ReportForm(Form):
    """The filters, sent by GET (nothing changes, so no CSRF token: links can be shared)."""

    class Meta:
        csrf = False

    start = StringField("From", validators=[Optional()], render_kw={"type": "date"})
    end = StringField("To", validators=[Optional()], render_kw={"type": "date"},
                      description="Whole days in UTC, both included.")
    team = SelectField("Team", default="")
    type = SelectField("Type", default="", choices=[("", "All types")] + [(t, label(t)) for t in TYPES])
    executive = SelectField("Executive", default="")
    by = SelectField("Break down by", default="team",
                     choices=[("team", "Team"), ("type", "Type"), ("executive", "Executive")])
    report = SelectField("Report", default="compliance", choices=list(REPORT_TABS))


def report_form():
    teams = reporting_reports.visible_teams(db.session, me())
    form = ReportForm(formdata=request.args)
    form.team.choices = [("", "All my teams" if current_user.role != "admin" else "All teams")] + [
        (str(t.id), t.name) for t in teams]
    people = db.session.execute(
        sa.select(User.id, User.name).where(User.id.in_(
            sa.select(team_members.c.user_id).where(team_members.c.team_id.in_([t.id for t in teams]))))
        .order_by(User.name, User.id)).all() if teams else []
    form.executive.choices = [("", "Everyone")] + [(str(i), name) for i, name in people]
    return form


def scope_from(form):
    """The checked Scope of a submitted filter form, or None with the errors put next to the fields."""
    if not form.validate():
        return None
    try:
        scope = reporting_reports.make_scope(db.session, me(), start=form.start.data or None, end=form.end.data or None,
                                     team_id=int(form.team.data) if form.team.data else None,
                                     type=form.type.data or None,
                                     assignee_id=int(form.executive.data) if form.executive.data else None)
    except Invalid as exc:
        for key, problem in exc.fields.items():
            field = form._fields.get(key)
            if field is not None:
                field.errors = list(field.errors) + [problem[:1].upper() + problem[1:] + "."]
        return None
    form.start.data = scope.start.date().isoformat()
    form.end.data = (scope.end - timedelta(days=1)).date().isoformat()
    return scope


def build_report(name, scope, by, now):
    """The figures of one report and its chart (None for the breaches list)."""
    session = db.session
    if name == "compliance":
        data = reporting_reports.sla_compliance(session, scope, now, by=by)
        rows = data["rows"] or [data["total"]]
        chart = charts.bar_chart(
            [r["label"] for r in rows],
            [("First response", [r["fr_pct"] for r in rows]), ("Resolution", [r["res_pct"] for r in rows])],
            title=f"SLA compliance by {by}, % met", unit="%", max_value=100)
    elif name == "backlog":
        data = reporting_reports.backlog(session, scope, now, by=by)
        chart = charts.bar_chart([text for _, text in reporting_reports.AGE_BUCKETS],
                                 [("Open items", [data["total"][k] for k, _ in reporting_reports.AGE_BUCKETS])],
                                 title="Backlog by age")
    elif name == "daily":
        data = reporting_reports.created_resolved(session, scope)
        chart = charts.line_chart([d["day"].strftime("%d %b") for d in data],
                                  [("Created", [d["created"] for d in data]),
                                   ("Resolved", [d["resolved"] for d in data])],
                                  title="Created and resolved per day")
    elif name == "handling":
        data = reporting_reports.handling_time(session, scope, by=by)
        rows = data["rows"] or [data["total"]]
        chart = charts.bar_chart([r["label"] for r in rows], [("Average hours", [r["avg_hours"] for r in rows])],
                                 title=f"Average handling time by {by}, hours", unit=" h")
    else:
        rows = reporting_reports.breaches(session, scope, now, limit=BREACHES_ON_PAGE + 1)
        data = {"rows": rows[:BREACHES_ON_PAGE], "more": len(rows) > BREACHES_ON_PAGE}
        chart = None
    return data, chart


@bp.route("/reports")
@login_required
def reports():
    form = report_form()
    scope = scope_from(form)
    if scope is None:
        return render_template("supervisor/reports.html", form=form, data=None, tabs=REPORT_TABS), 422
    name, by = form.report.data, form.by.data
    data, chart = build_report(name, scope, by, utcnow())
    args = {k: v for k, v in request.args.items() if k != "report"}
    return render_template("supervisor/reports.html", form=form, data=data, chart=chart, name=name, scope=scope,
                           by=by, tabs=REPORT_TABS, buckets=reporting_reports.AGE_BUCKETS, args=args)


# --- CSV ------------------------------------------------------------------------------------------

def _group_rows(report, names):
    for row in report["rows"] + [report["total"]]:
        yield [row["label"]] + [row[n] for n in names]


@bp.route("/reports/<name>.csv")
@login_required
def report_csv(name):
    if name not in REPORTS:
        abort(404)
    form = report_form()
    scope = scope_from(form)
    if scope is None:
        problems = "; ".join(f"{f.label.text}: {' '.join(f.errors)}" for f in form if f.errors)
        raise Invalid(f"the report filters are not valid ({problems})")
    now = utcnow()
    by = form.by.data
    stem = f"{scope.start.date().isoformat()}_{form.end.data}"
    group = by.capitalize()
    if name == "compliance":
        report = reporting_reports.sla_compliance(db.session, scope, now, by=by)
        header = [group, "Items", "First response met", "First response missed", "First response pending",
                  "First response % met", "Resolution met", "Resolution missed", "Resolution pending",
                  "Resolution % met"]
        rows = _group_rows(report, ("items", "fr_met", "fr_missed", "fr_pending", "fr_pct", "res_met",
                                    "res_missed", "res_pending", "res_pct"))
    elif name == "backlog":
        report = reporting_reports.backlog(db.session, scope, now, by=by)
        header = [group] + [text for _, text in reporting_reports.AGE_BUCKETS] + ["Total", "As of (UTC)"]
        rows = ([*r, report["as_of"]] for r in _group_rows(report, [k for k, _ in reporting_reports.AGE_BUCKETS] + ["total"]))
    elif name == "daily":
        header = ["Day (UTC)", "Created", "Resolved"]
        rows = ([d["day"], d["created"], d["resolved"]] for d in reporting_reports.created_resolved(db.session, scope))
    elif name == "handling":
        report = reporting_reports.handling_time(db.session, scope, by=by)
        header = [group, "Resolved", "Average hours (created to resolved)", "Longest hours"]
        rows = _group_rows(report, ("resolved", "avg_hours", "max_hours"))
    else:
        header = ["Reference", "Subject", "Team", "Type", "Priority", "Assignee", "Created (UTC)",
                  "First response due (UTC)", "First response (UTC)", "First response missed",
                  "Resolution due (UTC)", "Resolved or closed (UTC)", "Resolution missed", "SLA state"]
        rows = ([r[c] for c in reporting_reports.BREACH_COLUMNS] for r in reporting_reports.iter_breaches(db.session, scope, now))
    return csv_response(f"{name}_{stem}.csv", header, rows)


ITEM_HEADER = ["Reference", "Subject", "Type", "Status", "Priority", "Team", "Assignee", "Requester", "Source",
               "Created (UTC)", "First response due (UTC)", "First response (UTC)", "Resolution due (UTC)",
               "Resolved (UTC)", "Closed (UTC)", "SLA state", "Escalation level"]


@bp.route("/items.csv")
@login_required
def items_csv():
    """Any item list as CSV: the items the signed-in user may see, filtered like the queues.

    ?status=open|all|<status>, team=<id>, assignee=none|me|<id>, type=<type>, from/to=YYYY-MM-DD (created).
    """
    args = request.args
    status = args.get("status", "open")
    if status not in ("open", "all", *STATUSES):
        raise Invalid("unknown status", {"status": "open, all or a status"})
    assignee = args.get("assignee") or None
    team = args.get("team") or None
    try:
        team_id = int(team) if team else None
        if assignee not in (None, "none", "me"):
            assignee = int(assignee)
    except ValueError:
        raise Invalid("team and assignee are ids", {"team": "an id", "assignee": "an id, none or me"}) from None
    start, end = reporting_reports.creation_window(args.get("from"), args.get("to"))
    rows = reporting_reports.item_rows(db.session, me(), status=status, team_id=team_id, assignee=assignee,
                               type=args.get("type") or None, start=start, end=end)
    return csv_response(f"items_{utcnow():%Y-%m-%d}.csv", ITEM_HEADER,
                        ([r[c] for c in reporting_reports.ITEM_COLUMNS] for r in rows))
