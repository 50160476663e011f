"""Admin forms. Choices that come from the database (teams, calendars, mailboxes) are filled in by the view."""
from zoneinfo import available_timezones

from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from queue_app.models.routing_rule import SOURCES as RULE_SOURCES
from queue_app.models.user import ROLES
from queue_app.models.work_item import PRIORITIES, STATUSES, TYPES
from queue_app.services.errors import Invalid
from queue_app.services.people.users import normalise_email
from queue_app.web.forms import Form
from queue_app.web.templating import label

TLS_CHOICES = [("ssl", "SSL/TLS (port 993)"), ("starttls", "STARTTLS (port 143)"), ("none", "None (testing only)")]


class ActionForm(Form):
    """A button that only needs its CSRF token (retry, discard)."""


class ReleaseForm(Form):
    mailbox_id = SelectField("File into mailbox", coerce=int, validators=[DataRequired(message="Choose a mailbox.")],
                             description="The new item takes this mailbox's type, team and priority.")
    submit = SubmitField("Release as new item")


class ImapFieldsMixin:
    """The optional IMAP account a mailbox is polled from."""

    imap_host = StringField("IMAP host", validators=[Optional(), Length(max=255)],
                            description="Leave empty when mail arrives by SMTP instead.")
    imap_port = IntegerField("IMAP port", validators=[Optional(), NumberRange(min=1, max=65535)],
                             description="Empty: the usual port for the TLS mode.")
    imap_tls = SelectField("IMAP security", choices=TLS_CHOICES, default="ssl")
    imap_user = StringField("IMAP user", validators=[Optional(), Length(max=255)],
                            render_kw={"autocomplete": "off"})
    imap_folder = StringField("Folder to fetch from", validators=[Optional(), Length(max=255)], default="INBOX")
    imap_processed_folder = StringField("Move processed mail to", validators=[Optional(), Length(max=255)],
                                        description="Empty: processed mail is only marked as seen.")


class MailboxForm(ImapFieldsMixin, Form):
    address = StringField("Address", validators=[DataRequired(message="Enter the mailbox address.")],
                          render_kw={"type": "email", "autocomplete": "off"})
    type = SelectField("Work type", choices=[(t, label(t)) for t in TYPES], default="general")
    team = SelectField("Team", validators=[DataRequired(message="Choose a team.")])
    priority = SelectField("Priority", choices=[(p, label(p)) for p in PRIORITIES], default="normal")
    # PasswordField never renders a value, so the stored password is never sent back to the browser.
    imap_password = PasswordField("IMAP password", validators=[Optional(), Length(max=255)],
                                  render_kw={"autocomplete": "new-password"})
    submit = SubmitField("Add mailbox")

    def validate_address(self, field):
        try:
            field.data = normalise_email(field.data)
        except Invalid as exc:
            raise ValidationError(exc.fields.get("email", exc.message)) from None


class MailboxEditForm(ImapFieldsMixin, Form):
    active = BooleanField("Active", description="Inactive mailboxes are not polled and do not receive new items.")
    type = SelectField("Work type", choices=[(t, label(t)) for t in TYPES])
    team = SelectField("Team", validators=[DataRequired(message="Choose a team.")])
    priority = SelectField("Priority", choices=[(p, label(p)) for p in PRIORITIES])
    imap_password = PasswordField("New IMAP password", validators=[Optional(), Length(max=255)],
                                  description="Leave empty to keep the stored password.",
                                  render_kw={"autocomplete": "new-password"})
    clear_password = BooleanField("Remove the stored IMAP password")
    submit = SubmitField("Save mailbox")


# --- people, teams, SLA and routing ---------------------------------------------------------------

class MultiCheckboxField(SelectMultipleField):
    """A list of checkboxes (one per choice) instead of a multi-select box."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def timezone_choices():
    return [(name, name) for name in sorted(available_timezones()) if "/" in name or name == "UTC"]


class UserForm(Form):
    email = StringField("Email", validators=[Optional(), Length(max=255)],
                        render_kw={"type": "email", "autocomplete": "off"})
    name = StringField("Name", validators=[DataRequired(message="Enter a name."), Length(max=120)])
    role = SelectField("Role", choices=[(r, label(r)) for r in ROLES], default="executive")
    teams = MultiCheckboxField("Teams", coerce=int, validate_choice=True)
    skills = MultiCheckboxField("Skills", choices=[(t, label(t)) for t in TYPES],
                                description="The work types skills-based and SLA-aware assignment give them.")
    capacity = IntegerField("Capacity", default=20, validators=[InputRequired(message="Enter a number."),
                                                                NumberRange(min=0, max=1000)],
                            description="How many open items auto-assignment may give them at most.")
    timezone = SelectField("Time zone", default="UTC")
    active = BooleanField("Active", default=True, description="Inactive people cannot sign in and get no work.")
    password = PasswordField("Password", validators=[Optional(), Length(max=200)],
                             render_kw={"autocomplete": "new-password"})
    submit = SubmitField("Save")


class MfaPolicyForm(Form):
    roles = MultiCheckboxField("Roles that must use two-step sign-in", choices=[(r, label(r)) for r in ROLES],
                               description="People of these roles set it up at their next sign-in, before any page.")
    submit = SubmitField("Save")


class ServiceAccountForm(Form):
    name = StringField("Name", validators=[DataRequired(message="Enter a name."), Length(max=120)],
                       description="The partner system, e.g. Courier Partner.")
    teams = MultiCheckboxField("Teams it creates items for", coerce=int, validate_choice=True)
    submit = SubmitField("Add service account")


class TeamForm(Form):
    name = StringField("Name", validators=[DataRequired(message="Enter a name."), Length(max=120)])
    email = StringField("Team address", validators=[Optional(), Length(max=255)], render_kw={"type": "email"},
                        description="Optional: where the team can be reached.")
    work_types = MultiCheckboxField("Work types", choices=[(t, label(t)) for t in TYPES],
                                    description="Items of these types go to this team when nothing else decides.")
    auto_assign = SelectField("Auto-assignment", choices=[
        ("manual", "Manual: supervisors assign"),
        ("round_robin", "Round robin: take turns"),
        ("least_loaded", "Least loaded: fewest open items"),
        ("skills", "Skills-based: has the item's type, fewest open items"),
        ("sla_aware", "SLA-aware: most urgent first, to the most free capacity"),
    ], default="manual")
    approval_threshold = StringField("Approval threshold", validators=[Optional(), Length(max=20)],
                                     render_kw={"inputmode": "decimal"},
                                     description="Resolutions above this amount need a second person. Empty: none.")
    approval_due_minutes = IntegerField("Approval due within (business minutes)", validators=[Optional()],
                                        description="Checkers are warned near it and told when it is overdue. "
                                                    "Empty: no due time.")
    auto_close_days = IntegerField("Close resolved items after (days)", validators=[Optional()],
                                   description="A resolved item no one reopened is closed this many days later. "
                                               "Empty: never.")
    calendar = SelectField("Business calendar", coerce=int, default=0,
                           description="Used when the item's SLA policy names no calendar.")
    executives_may_pass = BooleanField("Executives may pass items to a colleague",
                                       description="The assignee may pass an item to another member with room.")
    submit = SubmitField("Save team")


class CalendarForm(Form):
    name = StringField("Name", validators=[DataRequired(message="Enter a name."), Length(max=120)])
    timezone = SelectField("Time zone", default="UTC")
    hours_mon = StringField("Monday")
    hours_tue = StringField("Tuesday")
    hours_wed = StringField("Wednesday")
    hours_thu = StringField("Thursday")
    hours_fri = StringField("Friday")
    hours_sat = StringField("Saturday")
    hours_sun = StringField("Sunday")
    holiday_country = StringField("Public holidays of country", validators=[Optional(), Length(max=8)],
                                  description="A country code such as IN, DE or US. Empty: no public holidays.")
    holiday_subdivision = StringField("Region", validators=[Optional(), Length(max=16)],
                                      description="Optional subdivision code, such as MH for Maharashtra.")
    closed_dates = TextAreaField("Other closed dates", validators=[Optional(), Length(max=20000)],
                                 description="YYYY-MM-DD, one per line or separated by commas.")
    submit = SubmitField("Save calendar")


class PolicyForm(Form):
    name = StringField("Name", validators=[DataRequired(message="Enter a name."), Length(max=120)])
    match_type = SelectField("Work type", choices=[("", "Any type")] + [(t, label(t)) for t in TYPES], default="")
    match_priority = SelectField("Priority", choices=[("", "Any priority")] + [(p, label(p)) for p in PRIORITIES],
                                 default="")
    match_team = SelectField("Team", default="")
    calendar = SelectField("Calendar", default="", description="Empty: the team's calendar, else round the clock.")
    first_response_minutes = IntegerField("First response (business minutes)", default=240,
                                          validators=[InputRequired(message="Enter a number.")])
    resolution_minutes = IntegerField("Resolution (business minutes)", default=2880,
                                      validators=[InputRequired(message="Enter a number.")])
    warn_at_percent = IntegerField("Warn at (% of the time used)", default=75,
                                   validators=[InputRequired(message="Enter a number.")])
    pause_statuses = MultiCheckboxField("Statuses that pause the clock",
                                        choices=[(s, label(s)) for s in STATUSES])
    escalation = TextAreaField("Escalation ladder (JSON)", validators=[Optional(), Length(max=20000)],
                               render_kw={"class": "code", "spellcheck": "false"},
                               description='For example [{"after_breach_minutes": 0, "notify": ["assignee", '
                                           '"supervisors"], "raise_priority": true}]. Empty: the default ladder.')
    submit = SubmitField("Save policy")


class RoutingRuleForm(Form):
    name = StringField("Name", validators=[DataRequired(message="Enter a name."), Length(max=120)])
    position = IntegerField("Position", default=100, validators=[InputRequired(message="Enter a number.")],
                            description="Lower runs first; the first matching rule wins.")
    active = BooleanField("Active", default=True)
    source = SelectField("Arrived by", choices=[("", "Any way")] + [(s, label(s)) for s in RULE_SOURCES], default="")
    recipient = StringField("Sent to address", validators=[Optional(), Length(max=255)])
    sender = StringField("From", validators=[Optional(), Length(max=255)],
                         description="A full address, or @domain for everyone there.")
    subject_contains = StringField("Subject contains", validators=[Optional(), Length(max=255)])
    keywords = TextAreaField("Any of these keywords", validators=[Optional(), Length(max=6000)],
                             description="In the subject or body; separated by commas or new lines.")
    match_type = SelectField("Work type is", choices=[("", "Any type")] + [(t, label(t)) for t in TYPES], default="")
    set_type = SelectField("Set type", choices=[("", "Leave as is")] + [(t, label(t)) for t in TYPES], default="")
    set_team = SelectField("Set team", coerce=int, default=0)
    set_priority = SelectField("Set priority", choices=[("", "Leave as is")] + [(p, label(p)) for p in PRIORITIES],
                               default="")
    submit = SubmitField("Save rule")
