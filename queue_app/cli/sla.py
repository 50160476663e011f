"""`flask sla load FILE` and `flask sla export`: SLA calendars and policies as code."""
import json
from pathlib import Path

import click
import yaml
from flask.cli import AppGroup

from queue_app.cli.actor import cli_actor
from queue_app.extensions import db
from queue_app.services.errors import Invalid
from queue_app.services.sla import config as sla_config

sla = AppGroup("sla", help="Load or export SLA calendars and policies.")

YAML_SUFFIXES = (".yml", ".yaml")


@sla.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def load(file):
    """Create or update the calendars and policies in FILE (.yml, .yaml or .json) by name."""
    data = _parse(file)
    try:
        summary = sla_config.load_config(db.session, data, actor=cli_actor())
        db.session.commit()
    except Invalid as exc:
        db.session.rollback()
        lines = [f"{file.name}: {exc.message}:"] + [f"  {path}: {msg}" for path, msg in exc.fields.items()]
        raise click.ClickException("\n".join(lines)) from None
    click.echo(
        f"calendars: {summary['calendars_created']} created, {summary['calendars_updated']} updated; "
        f"policies: {summary['policies_created']} created, {summary['policies_updated']} updated; "
        f"{summary['unchanged']} unchanged"
    )


@sla.command("export")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def export(fmt):
    """Print every calendar and active policy in the format `sla load` reads."""
    data = sla_config.export_config(db.session)
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


def _parse(file):
    """The file's data; the format comes from the extension so errors can be precise."""
    suffix = file.suffix.lower()
    text = file.read_text(encoding="utf-8")
    if suffix in YAML_SUFFIXES:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise click.ClickException(f"{file.name}: not valid YAML{where}: {problem}") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.ClickException(
                f"{file.name}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    raise click.ClickException(f"{file.name}: unknown format; use a .yml, .yaml or .json file")
