"""One stdout handler for the web, the CLI and the workers."""
import logging
import sys


class ContextFilter(logging.Filter):
    """Adds the RQ job id (or '-') to every record, so job log lines can be followed."""

    def filter(self, record):
        try:
            from rq import get_current_job

            job = get_current_job()
        except Exception:  # pragma: no cover - rq missing or no connection
            job = None
        record.job_id = job.id if job else "-"
        return True


def configure_logging(app):
    root = logging.getLogger()
    if not any(getattr(h, "_backdesk", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler._backdesk = True
        handler.addFilter(ContextFilter())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(job_id)s] %(name)s: %(message)s"))
        root.addHandler(handler)
    level = app.config.get("LOG_LEVEL", "INFO")
    root.setLevel(level)
    # A line per filed email is what a person reads; RQ's per-job chatter and aiosmtpd's
    # per-connection lines (a readiness probe's "Connection lost") only at LOG_LEVEL=DEBUG.
    quiet = "DEBUG" if str(level).upper() == "DEBUG" else "WARNING"
    for name in ("rq", "mail.log"):
        logging.getLogger(name).setLevel(quiet)
