"""CLI commands: `flask --app wsgi <command>`."""


def register_cli(app):
    from queue_app.cli.checks import checks_cli
    from queue_app.cli.demo import seed_demo
    from queue_app.cli.intake import intake, mailboxes
    from queue_app.cli.outbox import outbox
    from queue_app.cli.sla import sla
    from queue_app.cli.users import users

    app.cli.add_command(users)
    app.cli.add_command(seed_demo)
    app.cli.add_command(outbox)
    app.cli.add_command(intake)
    app.cli.add_command(mailboxes)
    app.cli.add_command(sla)
    app.cli.add_command(checks_cli)

    from workers.cli import run_all, scheduler, worker  # imported lazily: only the CLI needs RQ's worker

    app.cli.add_command(worker)
    app.cli.add_command(scheduler)
    app.cli.add_command(run_all)
