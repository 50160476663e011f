"""`flask users create|invite|add-service|token|tokens|revoke-token|reset-two-step|list`."""
from contextlib import contextmanager

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from queue_app.cli.actor import cli_actor
from queue_app.extensions import db
from queue_app.models import User
from queue_app.models.base import utcnow
from queue_app.models.user import ROLES, SCOPES
from queue_app.services.errors import DomainError
from queue_app.services.people import account_links
from queue_app.services.people import tokens as token_service
from queue_app.services.people import users as user_service

users = AppGroup("users", help="Manage people who log in.")


@contextmanager
def _committed():
    """Commit what the block did; a refusal rolls it back and ends the command with its message."""
    try:
        yield
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None


@users.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), default="executive", show_default=True)
@click.option("--team", "teams", multiple=True, help="Team name; repeat for several teams.")
@click.option("--password", default=None, help="Asked for when neither it nor --invite is given.")
@click.option("--invite", is_flag=True, help="No password: mail an invitation to choose one.")
@click.option("--name", default=None)
def create(email, role, teams, password, invite, name):
    """Create a user, with a password or (--invite) an invitation by mail."""
    if invite and password is not None:
        raise click.UsageError("give --password or --invite, not both")
    if not invite and password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _committed():
        if invite:
            user = account_links.invite(db.session, email=email, role=role, name=name, teams=teams, actor=cli_actor())
        else:
            user = user_service.create_user(db.session, email=email, password=password, role=role, name=name,
                                            teams=teams, actor=cli_actor())
    click.echo(f"created {user.role} {user.email} in {', '.join(t.name for t in user.teams) or 'no team'}"
               + ("; invitation mailed" if invite else ""))


def _user(email):
    user = user_service.get_user_by_email(db.session, email)
    if user is None:
        raise click.ClickException(f"no user {email}")
    return user


@users.command("invite")
@click.argument("email")
def invite_again(email):
    """Mail EMAIL a new invitation (they have not chosen a password yet); earlier links stop working."""
    user = _user(email)
    with _committed():
        account_links.resend_invitation(db.session, user, actor=cli_actor())
    click.echo(f"invitation mailed to {user.email}")


@users.command("reset-two-step")
@click.argument("email")
def reset_two_step(email):
    """Remove EMAIL's two-step sign-in (a lost phone) and end their sessions."""
    user = _user(email)
    with _committed():
        user_service.reset_mfa(db.session, user, actor=cli_actor())
    click.echo(f"two-step sign-in of {user.email} reset; their sessions have ended")


@users.command("add-service")
@click.argument("name")
@click.option("--team", "teams", multiple=True, required=True, help="A team it files items for; repeat for several.")
def add_service(name, teams):
    """Create a service account NAME: API tokens only, files items for its teams, reads only those."""
    with _committed():
        user = user_service.create_service_account(db.session, name=name, teams=teams, actor=cli_actor())
    click.echo(f"created service account {user.email} for {', '.join(t.name for t in user.intake_teams)}; "
               f"give it a token with `flask users token {user.email}`")


@users.command("token")
@click.argument("email")
@click.option("--name", default="cli", show_default=True, help="A label for the token.")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
              help="Repeat for several; default read and write (read and intake for a service account).")
def token(email, name, scopes):
    """Print a new API token for EMAIL (shown once; only its hash is stored)."""
    user = user_service.get_user_by_email(db.session, email)
    if user is None:
        raise click.ClickException(f"no user {email}")
    with _committed():
        _row, value = token_service.issue(db.session, user, name, scopes=scopes or None, actor=cli_actor())
    click.echo(value)  # alone on stdout, so scripts can capture it


@users.command("tokens")
@click.argument("email")
def list_tokens(email):
    """List EMAIL's API tokens: id, name, scopes, created, last used, expires, state."""
    user = user_service.get_user_by_email(db.session, email)
    if user is None:
        raise click.ClickException(f"no user {email}")
    now = utcnow()
    for row in token_service.tokens_of(db.session, user):
        state = "revoked" if row.revoked_at else "expired" if row.is_expired(now) else "active"
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        click.echo(f"{row.id:>6} {row.name[:30]:30} {' '.join(row.scope_list):18} {row.created_at:%Y-%m-%d} "
                   f"used {used:16} expires {row.expires_at:%Y-%m-%d} {state}")


@users.command("revoke-token")
@click.argument("token_id", type=int)
def revoke_token(token_id):
    """Revoke the API token with this id (see `flask users tokens EMAIL`), for good."""
    with _committed():
        row = token_service.get_token(db.session, token_id)
        token_service.revoke(db.session, row, actor=cli_actor())
    click.echo(f"revoked token #{row.id} ({row.name}) of {row.user.email}")


@users.command("list")
def list_users():
    """List users with role and teams."""
    for user in db.session.scalars(sa.select(User).order_by(User.email)):
        teams = user.intake_teams if user.is_service else user.teams  # a service account: the teams it files for
        click.echo(f"{user.email:40} {user.role:11} {', '.join(t.name for t in teams)}")
