"""Forms for signing in and for a person's own settings."""
from zoneinfo import available_timezones

from wtforms import PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from queue_app.services.people.users import MIN_PASSWORD_LENGTH
from queue_app.web.forms import Form


class LoginForm(Form):
    email = StringField("Email", validators=[DataRequired()], render_kw={"autocomplete": "username", "type": "email"})
    password = PasswordField("Password", validators=[DataRequired()], render_kw={"autocomplete": "current-password"})
    submit = SubmitField("Sign in")


def timezone_choices():
    return [(name, name.replace("_", " ")) for name in sorted(available_timezones())]


class TimezoneForm(Form):
    timezone = SelectField("Time zone", validators=[DataRequired()],
                           description="All times on every page are shown in this zone.")
    save_timezone = SubmitField("Save time zone")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timezone.choices = timezone_choices()


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
