"""Admin forms. Choices that come from the database (teams, mailboxes) are filled in by the view."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

from queue_app.auth.templating import label
from queue_app.models.work_item import PRIORITIES, TYPES
from queue_app.services.errors import Invalid
from queue_app.services.users import normalise_email

TLS_CHOICES = [("ssl", "SSL/TLS (port 993)"), ("starttls", "STARTTLS (port 143)"), ("none", "None (testing only)")]


class ActionForm(FlaskForm):
    """A button that only needs its CSRF token (retry, discard)."""


class ReleaseForm(FlaskForm):
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


class MailboxForm(ImapFieldsMixin, FlaskForm):
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


class MailboxEditForm(ImapFieldsMixin, FlaskForm):
    active = BooleanField("Active", description="Inactive mailboxes are not polled and do not receive new items.")
    type = SelectField("Work type", choices=[(t, label(t)) for t in TYPES])
    team = SelectField("Team", validators=[DataRequired(message="Choose a team.")])
    priority = SelectField("Priority", choices=[(p, label(p)) for p in PRIORITIES])
    imap_password = PasswordField("New IMAP password", validators=[Optional(), Length(max=255)],
                                  description="Leave empty to keep the stored password.",
                                  render_kw={"autocomplete": "new-password"})
    clear_password = BooleanField("Remove the stored IMAP password")
    submit = SubmitField("Save mailbox")
