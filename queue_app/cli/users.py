"""`flask users create|token|list`."""
import click
import sqlalchemy as sa
from flask.cli import AppGroup

from queue_app.cli.actor import cli_actor
from queue_app.extensions import db
from queue_app.models import User
from queue_app.models.user import ROLES
from queue_app.services.errors import DomainError
from queue_app.services.people import users as user_service

users = AppGroup("users", help="Manage people who log in.")


@users.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), default="executive", show_default=True)
@click.option("--team", "teams", multiple=True, help="Team name; repeat for several teams.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--name", default=None)
def create(email, role, teams, password, name):
    """Create a user."""
    try:
        user = user_service.create_user(db.session, email=email, password=password, role=role, name=name, teams=teams,
                                        actor=cli_actor())
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    click.echo(f"created {user.role} {user.email} in {', '.join(t.name for t in user.teams) or 'no team'}")


@users.command("token")
@click.argument("email")
@click.option("--name", default="cli", show_default=True, help="A label for the token.")
def token(email, name):
    """Print a new API token for EMAIL (shown once; only its hash is stored)."""
    user = user_service.get_user_by_email(db.session, email)
    if user is None:
        raise click.ClickException(f"no user {email}")
    value = user_service.issue_api_token(db.session, user, name, actor=cli_actor())
    db.session.commit()
    click.echo(value)


@users.command("list")
def list_users():
    """List users with role and teams."""
    for user in db.session.scalars(sa.select(User).order_by(User.email)):
        click.echo(f"{user.email:40} {user.role:11} {', '.join(t.name for t in user.teams)}")
