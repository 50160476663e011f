"""`flask intake file` and `flask mailboxes add|list` (`intake smtp|imap` run worker code: workers.cli)."""
import mailbox as mailbox_lib
import os
import re
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from queue_app.cli.actor import cli_actor
from queue_app.extensions import db
from queue_app.services.errors import DomainError
from queue_app.services.intake import mailboxes as mailbox_service

intake = AppGroup("intake", help="Receive email: import files, run the SMTP server, poll IMAP.")
mailboxes = AppGroup("mailboxes", help="The addresses Backdesk receives work for.")

SUMMARY_KEYS = {"created": "new items", "followup": "follow-ups", "duplicate": "duplicates",
                "quarantined": "quarantined"}


def _check_path(path):
    path = Path(path)
    if path.is_dir() and not ((path / "cur").is_dir() and (path / "new").is_dir()):
        raise click.ClickException(f"{path} is a folder but not a Maildir (no cur/ and new/)")
    return path


def read_messages(path):
    """Yield the raw bytes of each message in an .eml file, an mbox file or a Maildir folder."""
    path = _check_path(path)
    if path.is_dir():
        box = mailbox_lib.Maildir(str(path), factory=None, create=False)
        for key in sorted(box.keys(), key=_maildir_order):
            yield box.get_bytes(key)
        return
    with path.open("rb") as handle:
        start = handle.read(5)
    if start == b"From ":
        box = mailbox_lib.mbox(str(path), factory=None, create=False)
        for key in box.keys():
            yield box.get_bytes(key)
        box.close()
    else:
        yield path.read_bytes()


def _maildir_order(key):
    """Maildir names start with the delivery time ("1700000000.M5P12Q3..."): numbers compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def import_messages(raws, fallback_mailbox=None, batch=200, read_ahead=False):
    """Store and process each message; returns a Counter of outcomes. Re-importing creates nothing."""
    from queue_app.services.intake import bulk as intake_service

    return intake_service.import_raw_messages(db.session, raws, fallback_mailbox=fallback_mailbox, batch=batch,
                                              read_ahead=read_ahead)


@intake.command("file")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--mailbox", "mailbox_address", help="Mailbox for messages addressed to none of ours.")
@click.option("--read-ahead/--no-read-ahead", default=None,
              help="Read and parse the next messages in a second process while this one writes "
                   "(default: on with 2+ CPUs).")
@click.option("--batch-size", type=click.IntRange(1, 5000), default=200, show_default=True,
              help="Messages per transaction.")
def import_files(paths, mailbox_address, read_ahead, batch_size):
    """Import .eml files, mbox files and Maildir folders."""
    fallback = None
    if mailbox_address:
        fallback = mailbox_service.find_mailbox(db.session, mailbox_address)
        if fallback is None:
            raise click.ClickException(f"no mailbox {mailbox_address}; add it with `flask mailboxes add`")
    for path in paths:  # every path checked before anything is imported
        _check_path(path)
    if read_ahead is None:
        read_ahead = (os.cpu_count() or 1) > 1
    counts = import_messages((raw for path in paths for raw in read_messages(path)), fallback, batch=batch_size,
                             read_ahead=read_ahead)
    total = sum(counts.values())
    parts = ", ".join(f"{counts[key]} {label}" for key, label in SUMMARY_KEYS.items())
    click.echo(f"{total} messages: {parts}")


@mailboxes.command("add")
@click.argument("address")
@click.option("--type", "work_type", default="general", show_default=True)
@click.option("--team", required=True)
@click.option("--priority", default="normal", show_default=True)
@click.option("--imap-host")
@click.option("--imap-port", type=int)
@click.option("--imap-tls", type=click.Choice(["none", "starttls", "ssl"]), default="ssl", show_default=True)
@click.option("--imap-user")
@click.option("--imap-password", help="Better: set it through the admin page; shells keep history.")
@click.option("--imap-folder", default="INBOX", show_default=True)
@click.option("--imap-processed-folder", help="Move processed mail here (default: just mark it seen).")
def add_mailbox(address, work_type, team, priority, imap_host, imap_port, imap_tls, imap_user, imap_password,
                imap_folder, imap_processed_folder):
    """Add a mailbox we receive mail for. IMAP_HOST/PORT/TLS/USER/FOLDER are the IMAP defaults."""
    cfg = current_app.config
    if imap_host is None and cfg.get("IMAP_HOST"):
        imap_host, imap_port = cfg["IMAP_HOST"], imap_port or cfg.get("IMAP_PORT")
        imap_tls, imap_user = cfg.get("IMAP_TLS", imap_tls), imap_user or cfg.get("IMAP_USER")
        imap_folder = cfg.get("IMAP_FOLDER") or imap_folder
    try:
        box = mailbox_service.create_mailbox(
            db.session, address=address, type=work_type, team_name=team, priority=priority, imap_host=imap_host,
            imap_port=imap_port, imap_tls=imap_tls, imap_user=imap_user, imap_password=imap_password,
            imap_folder=imap_folder, imap_processed_folder=imap_processed_folder, actor=cli_actor())
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        details = "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
        raise click.ClickException(f"{exc.message}{' (' + details + ')' if details else ''}") from None
    click.echo(f"added {box.address}: {box.type} for {box.team.name}, priority {box.priority}")


@mailboxes.command("list")
def list_mailboxes():
    """List mailboxes."""
    for box in mailbox_service.list_mailboxes(db.session):
        imap = f" imap {box.imap_user}@{box.imap_host}:{box.imap_port or ''}/{box.imap_folder}" if box.imap_host else ""
        click.echo(f"{box.address:35} {box.type:22} {box.team.name:16} {box.priority:7}"
                   f"{'' if box.active else ' (inactive)'}{imap}")
