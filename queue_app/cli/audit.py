"""`flask audit verify|seal`: check the audit trail's hash chain, and seal the entries not yet in it."""
import time

import click
from flask.cli import AppGroup

from queue_app.extensions import db
from queue_app.services.audit import chain

audit = AppGroup("audit", help="The audit trail's tamper-evident chain: verify it, seal pending entries.")

BUSY_RETRIES = 100  # PostgreSQL: tries while writers are in flight (50 ms apart)


def _require_chain():
    missing = chain.missing_tables(db.session)
    if missing:
        raise click.ClickException(
            f"this database has no audit chain (missing table{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}); run `flask --app wsgi db upgrade` first")


def _pending_text(pending):
    waiting = sum(pending.values())
    if not waiting:
        return "every entry is sealed"
    parts = ", ".join(f"{name}: {count}" for name, count in pending.items() if count)
    return f"{waiting} entries not sealed yet ({parts}); `flask audit seal` seals them"


@audit.command("verify")
def verify():
    """Walk the whole chain; report the first entry edited, deleted or inserted out of order, and exit 1."""
    _require_chain()
    result = chain.verify(db.session)
    db.session.rollback()
    if result.ok:
        click.echo(f"audit chain intact: {result.sealed} entries sealed, head at position {result.head_seq} "
                   f"(hash {result.head_hash}); {_pending_text(result.pending)}")
        return
    first = result.problems[0]
    lines = [f"audit chain BROKEN: {first.message}"]
    for problem in result.problems[1:]:
        lines.append(f"  also: {problem.message}")
    if result.more_problems:
        lines.append("  (and more)")
    lines.append(f"{result.sealed} positions walked; head at position {result.head_seq} (hash {result.head_hash}); "
                 f"{_pending_text(result.pending)}")
    raise click.ClickException("\n".join(lines))


@audit.command("seal")
def seal():
    """Seal every committed entry not yet in the chain."""
    _require_chain()
    total, tries = 0, 0
    while True:
        sealed = chain.seal(db.session)
        db.session.commit()
        if sealed.busy:
            tries += 1
            if tries >= BUSY_RETRIES:
                raise click.ClickException(f"sealed {total} entries, then writers kept the chain busy; "
                                           "try again (the scheduler seals them too)")
            time.sleep(0.05)
            continue
        total += sealed.count
        if sealed.count == 0:
            break
    click.echo(f"sealed {total} entries; head at position {sealed.head_seq} (hash {sealed.head_hash})")
