"""Entry point for gunicorn and the `flask --app wsgi` CLI."""
from queue_app import create_app

app = create_app()
