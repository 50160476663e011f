"""RQ job functions and the worker/scheduler entry points. Jobs call services; they hold no rules."""


def init_app(app):
    """Plug the workers into an application: committed outbox jobs go to RQ at once (the relay
    catches up on whatever this misses), and the worker commands join the app's CLI."""
    from queue_app.db import outbox
    from workers import cli, relay

    outbox.hand_over_with(app, relay.deliver)
    cli.register_cli(app)
