"""CLI commands: `flask --app wsgi <command>`."""


def register_cli(app):
    from queue_app.cli.audit import audit
    from queue_app.cli.checks import checks_cli
    from queue_app.cli.demo import seed_demo
    from queue_app.cli.intake import intake, mailboxes
    from queue_app.cli.sla import sla
    from queue_app.cli.users import users

    app.cli.add_command(users)
    app.cli.add_command(seed_demo)
    app.cli.add_command(intake)
    app.cli.add_command(mailboxes)
    app.cli.add_command(sla)
    app.cli.add_command(checks_cli)
    app.cli.add_command(audit)
    # The commands that run worker code (worker, scheduler, run-all, intake smtp|imap, sla sweep|recalculate,
    # outbox relay|status) are added by workers.init_app, so this package never imports the workers.
