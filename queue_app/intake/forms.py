"""The intake form. The per-type inputs are generated from services.items.work_types.FIELDS.

Their names carry the type ("return-order_number"), so a type's inputs never collide
with another type's (both returns and discrepancy fixes have a currency). Values are
passed to the service as typed; services.items.work_types is the one place that validates them.
"""
from flask_wtf.file import MultipleFileField
from wtforms import EmailField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Email, InputRequired, Length, Optional

from queue_app.models.work_item import PRIORITIES
from queue_app.services.items.lifecycle import MAX_BODY, MAX_SUBJECT
from queue_app.services.items.work_types import FIELDS
from queue_app.web.forms import Form, uploads_of

TYPE_LABELS = {
    "return": "Return",
    "document_verification": "Document verification",
    "discrepancy_fix": "Discrepancy fix",
    "escalation": "Escalation",
    "general": "General request",
}


def input_name(work_type, field_name):
    return f"{work_type}-{field_name}"


def _input_for(spec):
    label = spec.title + ("" if spec.required else " (optional)")
    description = spec.help
    if spec.kind == "choice":
        choices = [("", "— choose —")] + [(c, c.replace("_", " ").capitalize()) for c in spec.choices]
        return SelectField(label, choices=choices, validate_choice=False, description=description)
    if spec.kind == "text":
        return TextAreaField(label, description=description, render_kw={"rows": 3})
    kw = {"maxlength": spec.max_length}
    if spec.kind == "date":
        kw = {"type": "date", "placeholder": "YYYY-MM-DD"}
        description = description or "Date as YYYY-MM-DD."
    elif spec.kind == "decimal":
        kw = {"inputmode": "decimal", "placeholder": "0.00"}
    elif spec.kind == "currency":
        kw = {"maxlength": 3, "placeholder": "EUR", "autocapitalize": "characters", "class": "short"}
        description = description or "Three-letter code such as EUR."
    elif spec.kind == "ref":
        kw = {"placeholder": "BO-000123"}
    return StringField(label, description=description, render_kw=kw)


class IntakeForm(Form):
    type = SelectField("Type of request", validators=[InputRequired(message="Choose the type of request.")],
                       choices=[("", "— choose —")] + [(t, TYPE_LABELS[t]) for t in FIELDS])
    subject = StringField("Subject", validators=[DataRequired(message="A subject is required."),
                                                 Length(max=MAX_SUBJECT)])
    description = TextAreaField("Description", validators=[Optional(), Length(max=MAX_BODY)],
                                render_kw={"rows": 5})
    requester_email = EmailField("Customer email",
                                 validators=[DataRequired(message="The customer's email is required."),
                                             Email(message="Enter a valid email address.")],
                                 description="Replies and the acknowledgement go to this address.")
    requester_name = StringField("Customer name (optional)", validators=[Optional(), Length(max=255)])
    priority = SelectField("Priority", choices=[("", "Automatic")] + [(p, p.capitalize()) for p in PRIORITIES],
                           validators=[Optional()], description="Leave on Automatic unless you know better.")
    files = MultipleFileField("Documents (optional)", id="intake-files",
                              description="The customer's documents, e.g. a passport scan or a delivery note: "
                                          "PDF or image files. You can choose several.")
    submit = SubmitField("Submit request")

    def uploads(self):
        return uploads_of(self.files)

    def type_fields(self, work_type):
        """The bound inputs of one type, in definition order, with their specs."""
        return [(spec, self[input_name(work_type, spec.name)]) for spec in FIELDS[work_type]]

    def field_values(self, work_type):
        return {spec.name: field.data for spec, field in self.type_fields(work_type)}


for _type, _specs in FIELDS.items():
    for _spec in _specs:
        setattr(IntakeForm, input_name(_type, _spec.name), _input_for(_spec))
