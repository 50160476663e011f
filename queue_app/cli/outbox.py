"""`flask outbox relay|status`: move pending jobs to RQ by hand (the scheduler does it every few seconds)."""
import click
from flask.cli import AppGroup

outbox = AppGroup("outbox", help="Jobs waiting to be handed to RQ.")


@outbox.command("relay")
def relay():
    """Enqueue every pending job now."""
    from workers.relay import pending_count, relay_pending

    sent = relay_pending()
    click.echo(f"enqueued {sent} jobs; {pending_count()} still pending")


@outbox.command("status")
def status():
    """Count the jobs not yet handed to RQ."""
    from workers.relay import pending_count

    click.echo(f"{pending_count()} jobs pending")
