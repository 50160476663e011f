"""Forms for signing in and for a person's own settings."""
from zoneinfo import available_timezones

from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from queue_app.services.people.users import MIN_PASSWORD_LENGTH
from queue_app.web.forms import Form


class LoginForm(Form):
    email = StringField("Email", validators=[DataRequired()], render_kw={"autocomplete": "username", "type": "email"})
    password = PasswordField("Password", validators=[DataRequired()], render_kw={"autocomplete": "current-password"})
    submit = SubmitField("Sign in")


def timezone_names():
    return sorted(available_timezones())


def typed_timezone(value):
    """What was typed, as the zone's own name when it names one ("europe/berlin", "America/New York");
    anything else is left as typed, for the service to refuse."""
    text = (value or "").strip()
    wanted = text.replace(" ", "_").casefold()
    return next((name for name in timezone_names() if name.casefold() == wanted), text)


class TimezoneForm(Form):
    """Typed with suggestions (an <input list> over the ~600 zone names), checked by the service."""
    timezone = StringField("Time zone", validators=[DataRequired(), Length(max=64)], filters=[typed_timezone],
                           description="Type to search, e.g. Europe/Berlin. All times on every page are shown "
                                       "in this zone.",
                           render_kw={"list": "timezone-names", "autocomplete": "off", "spellcheck": "false"})
    save_timezone = SubmitField("Save time zone")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.zone_names = timezone_names()


class PasswordForm(Form):
    current_password = PasswordField("Current password", validators=[DataRequired()],
                                     render_kw={"autocomplete": "current-password"})
    new_password = PasswordField("New password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH)],
                                 description=f"At least {MIN_PASSWORD_LENGTH} characters. "
                                             "Changing it signs you out everywhere else.",
                                 render_kw={"autocomplete": "new-password"})
    confirm = PasswordField("Repeat the new password",
                            validators=[DataRequired(), EqualTo("new_password", message="The passwords do not match.")],
                            render_kw={"autocomplete": "new-password"})
    change_password = SubmitField("Change password")


class CodeForm(Form):
    """The second step of signing in, and the confirmation of a two-step set-up."""

    code = StringField("Code", validators=[DataRequired(message="Enter the code."), Length(max=40)],
                       render_kw={"autocomplete": "one-time-code", "autocapitalize": "off", "spellcheck": "false"})
    submit = SubmitField("Continue")


class ButtonForm(Form):
    """Only the CSRF token: a POST from a button (set up two-step sign-in, new recovery codes)."""


class ForgotPasswordForm(Form):
    email = StringField("Email", validators=[DataRequired(message="Enter your email address."), Length(max=255)],
                        render_kw={"autocomplete": "username", "type": "email"})
    submit = SubmitField("Send me a link")


class NewPasswordForm(Form):
    """A password chosen through a mailed link (reset or invitation)."""

    new_password = PasswordField("New password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=200)],
                                 description=f"At least {MIN_PASSWORD_LENGTH} characters.",
                                 render_kw={"autocomplete": "new-password"})
    confirm = PasswordField("Repeat the new password",
                            validators=[DataRequired(), EqualTo("new_password", message="The passwords do not match.")],
                            render_kw={"autocomplete": "new-password"})
    submit = SubmitField("Set password")
