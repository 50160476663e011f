"""The audit trail of configuration changes and sign-ins: filter, page through, export a period
(CSV or JSON lines, streamed), and seal pending entries into the chain. Admins only.

The filters come by GET (nothing changes, so no CSRF token: links can be shared); sealing is a
POST with its CSRF token. Paging is by keyset on the entry id, newest first.
"""
from flask import flash, redirect, render_template, request, url_for
from wtforms import SelectField, StringField
from wtforms.validators import Length, Optional

from queue_app.admin import bp
from queue_app.admin.forms import ActionForm
from queue_app.extensions import db
from queue_app.models.base import utcnow
from queue_app.services.audit import chain, export
from queue_app.services.audit.record import KINDS
from queue_app.services.errors import Invalid
from queue_app.web.downloads import csv_response, jsonl_response
from queue_app.web.forms import Form
from queue_app.web.navigation import safe_next

FORMATS = ("csv", "jsonl")


class AuditFilterForm(Form):
    class Meta:
        csrf = False

    who = StringField("Who", validators=[Optional(), Length(max=export.MAX_WHO)],
                      description="Part of their email address, or cli:, system, anonymous.")
    kind = SelectField("What", default="", choices=[("", "Everything")] + sorted(KINDS.items(), key=lambda c: c[1]))
    start = StringField("From", validators=[Optional()], render_kw={"type": "date"})
    end = StringField("To", validators=[Optional()], render_kw={"type": "date"},
                      description="Whole days in UTC, both included.")


def filters_from(form):
    """The service's Filters, or None with the errors put next to the fields."""
    if not form.validate():
        return None
    try:
        return export.parse_filters(form.who.data, form.kind.data, form.start.data, form.end.data)
    except Invalid as exc:
        for name, problem in exc.fields.items():
            form[name].errors = list(form[name].errors) + [problem[:1].upper() + problem[1:] + "."]
        return None


def filter_args():
    return {key: value for key, value in request.args.items() if key in ("who", "kind", "start", "end") and value}


@bp.route("/audit")
def audit_log():
    form = AuditFilterForm(formdata=request.args)
    filters = filters_from(form)
    entries, next_cursor = [], None
    if filters is not None:
        try:
            before = int(request.args["before"]) if request.args.get("before") else None
        except ValueError:
            before = None
        entries, next_cursor = export.page(db.session, filters, before_id=before)
    status = chain.status(db.session)
    return render_template("admin/audit.html", form=form, entries=entries, next_cursor=next_cursor, kinds=KINDS,
                           chain_status=status, args=filter_args(), action_form=ActionForm(),
                           formats=FORMATS), 200 if filters is not None else 422


@bp.route("/audit/export.<fmt>")
def audit_export(fmt):
    if fmt not in FORMATS:
        return redirect(url_for("admin.audit_log", **filter_args()))
    form = AuditFilterForm(formdata=request.args)
    filters = filters_from(form)
    if filters is None:
        problems = "; ".join(f"{f.label.text}: {' '.join(f.errors)}" for f in form if f.errors)
        raise Invalid(f"the filters are not valid ({problems})")
    start = filters.start.isoformat() if filters.start else "start"
    end = filters.end.isoformat() if filters.end else f"{utcnow():%Y-%m-%d}"
    name = f"audit_{start}_{end}.{fmt}"
    rows = export.iter_period(db.session, filters)
    if fmt == "csv":
        return csv_response(name, export.CSV_HEADER, (export.csv_row(row) for row in rows))
    return jsonl_response(name, (export.as_record(row) for row in rows))


@bp.route("/audit/seal", methods=["POST"])
def audit_seal():
    form = ActionForm()
    back = safe_next(request.form.get("next"), "admin.audit_log")
    if not form.validate_on_submit():
        flash("The form expired; please try again.", "error")
        return redirect(back)
    sealed = chain.seal(db.session)
    db.session.commit()
    if sealed.busy:
        flash("Entries are being written right now; nothing was sealed. Try again in a moment.", "error")
    else:
        flash(f"{sealed.count} entr{'y' if sealed.count == 1 else 'ies'} sealed; the chain's head is position "
              f"{sealed.head_seq}.", "success")
    return redirect(back)
