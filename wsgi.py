"""Entry point for gunicorn and the `flask --app wsgi` CLI: the application with its workers plugged in."""
import workers
from queue_app import create_app

app = create_app()
workers.init_app(app)
