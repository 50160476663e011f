"""`flask checks ...`: run an item's checks now, keep exchange rates, set a team's check settings."""
import uuid

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from queue_app.cli.actor import cli_actor
from queue_app.extensions import db
from queue_app.models import ExchangeRate, Team
from queue_app.services.checks import exchange_rates, runner
from queue_app.services.checks import settings as checks_settings
from queue_app.services.errors import DomainError
from queue_app.services.items import lifecycle

checks_cli = AppGroup("checks", help="Automated checks: run them, exchange rates, team settings.")


def _fail(exc):
    db.session.rollback()
    detail = "".join(f"\n  {name}: {problem}" for name, problem in exc.fields.items())
    raise click.ClickException(f"{exc.message}{detail}") from None


@checks_cli.command("run")
@click.argument("ref")
def run(ref):
    """Run every check of the item REF in this process (no worker) and print the results."""
    try:
        item = lifecycle.get_item(db.session, ref)
        results = runner.run_checks(db.session, item.id, run_key=f"cli-{uuid.uuid4().hex[:16]}")
        db.session.commit()
    except DomainError as exc:
        _fail(exc)
    for result in results:
        click.echo(f"{result.status:8} {result.name}: {result.message}")


@checks_cli.command("rate")
@click.argument("from_currency")
@click.argument("to_currency")
@click.argument("rate")
@click.option("--valid-from", type=click.DateTime(formats=["%Y-%m-%d"]), help="First day it applies (default today).")
def set_rate(from_currency, to_currency, rate, valid_from):
    """1 FROM_CURRENCY = RATE TO_CURRENCY from a day on (the inverse pair is derived when missing)."""
    try:
        row = exchange_rates.set_rate(db.session, from_currency, to_currency, rate,
                                      valid_from.date() if valid_from else None, actor=cli_actor())
        db.session.commit()
    except DomainError as exc:
        _fail(exc)
    click.echo(f"1 {row.from_currency} = {row.rate.normalize():f} {row.to_currency} from {row.valid_from}")


@checks_cli.command("rates")
def list_rates():
    """Every exchange rate, by pair and date."""
    rows = db.session.scalars(sa.select(ExchangeRate).order_by(ExchangeRate.from_currency, ExchangeRate.to_currency,
                                                               ExchangeRate.valid_from)).all()
    for row in rows:
        click.echo(f"{row.from_currency} {row.to_currency} {row.rate.normalize():f} from {row.valid_from}")
    if not rows:
        click.echo("no exchange rates")


@checks_cli.command("settings")
@click.argument("team_name")
@click.option("--base-currency")
@click.option("--return-window-days")
@click.option("--tolerance-absolute", help="In the base currency; '' back to the default.")
@click.option("--tolerance-percent", help="Of the expected amount; '' back to the default.")
@click.option("--order-number-format", help="A regular expression; '' back to the default.")
@click.option("--max-document-bytes")
@click.option("--allowed-document-types", help="Content types a file added to an item may have, comma-separated; "
                                               "'' back to the default.")
@click.option("--rejection-reason", "rejection_reasons", multiple=True,
              help="A reason a verifier may give for rejecting a document; repeatable (replaces the list); "
                   "'' back to the default list.")
@click.option("--reverification-days", help="Open a re-verification item this many days before a verified "
                                            "document expires; '' for never.")
@click.option("--document-format", "document_formats", multiple=True, metavar="TYPE=FORMAT",
              help="Number format of a document type: a regular expression or 'iban'; repeatable.")
def settings(team_name, document_formats, rejection_reasons, **options):
    """Show TEAM_NAME's check settings, changing the ones given."""
    team = db.session.scalar(sa.select(Team).where(Team.name == team_name))
    if team is None:
        raise click.ClickException(f"no team named {team_name!r}")
    changes = {name: value for name, value in options.items() if value is not None}
    if rejection_reasons:
        changes["document_rejection_reasons"] = None if rejection_reasons == ("",) else list(rejection_reasons)
    if document_formats:
        formats = {}
        for entry in document_formats:
            kind, sep, value = entry.partition("=")
            if not sep:
                raise click.ClickException(f"--document-format {entry!r}: write TYPE=FORMAT")
            formats[kind.strip()] = value.strip() or None
        current = checks_settings.settings_for(db.session, team.id).document_number_formats
        overrides = {k: v for k, v in current.items() if checks_settings.DOCUMENT_NUMBER_FORMATS.get(k) != v}
        changes["document_number_formats"] = {**overrides, **formats}
    try:
        effective = checks_settings.update_settings(db.session, team, actor=cli_actor(), **changes) if changes else \
            checks_settings.settings_for(db.session, team.id)
        db.session.commit()
    except DomainError as exc:
        _fail(exc)
    threshold = team.approval_threshold
    click.echo(f"team: {team.name}")
    click.echo(f"approval threshold: {'none' if threshold is None else f'{threshold:.2f}'} {effective.base_currency}")
    for name in checks_settings.FIELDS:
        value = getattr(effective, name)
        if name == "document_number_formats":
            for kind, fmt in sorted(value.items()):
                click.echo(f"document number format {kind}: {fmt or 'any'}")
        elif name in ("allowed_document_types", "document_rejection_reasons"):
            click.echo(f"{name.replace('_', ' ')}: {', '.join(value)}")
        elif name == "reverification_days":
            click.echo(f"re-verification: {'never' if value is None else f'{value} days before expiry'}")
        else:
            click.echo(f"{name.replace('_', ' ')}: {value}")
