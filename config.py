"""Configuration classes. Every setting comes from an environment variable.

The helpers raise on malformed values so a typo in production fails at start-up
instead of silently falling back to a default.
"""
import os
import secrets
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("BACKDESK_INSTANCE_DIR", BASE_DIR / "instance"))

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(RuntimeError):
    """A setting is missing or malformed."""


def env_str(name, default=None):
    return os.environ.get(name, default)


def env_int(name, default):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def env_bool(name, default=False):
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false), got {raw!r}")


def _development_secret_key():
    """Generate a secret once and keep it in instance/, so restarts keep sessions."""
    path = INSTANCE_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    path.write_text(key)
    path.chmod(0o600)
    return key


def _default_database_url():
    return f"sqlite:///{INSTANCE_DIR / 'backdesk.db'}"


class Config:
    ENV_NAME = "base"
    SECRET_KEY = None
    SQLALCHEMY_DATABASE_URI = None
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    REDIS_URL = "redis://127.0.0.1:6379/0"
    LOG_LEVEL = "INFO"

    # Requests: a hard cap on body size (attachments included).
    MAX_CONTENT_LENGTH = 30 * 1024 * 1024

    # Sessions and cookies.
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SECURE = False
    WTF_CSRF_TIME_LIMIT = None
    # Strict-Transport-Security on every response: only where the site is served over HTTPS.
    SEND_HSTS = False
    # A signed-in browser is signed out after SESSION_IDLE_MINUTES without a request, and
    # SESSION_MAX_HOURS after signing in, whatever it does; cookies live no longer than that.
    SESSION_IDLE_MINUTES = 30
    SESSION_MAX_HOURS = 12

    # Failed sign-ins allowed per SIGN_IN_WINDOW_MINUTES: per account (the email tried) and per
    # client address. Past either, sign-in is refused (429) until the oldest failure is that old.
    SIGN_IN_FAILURES_PER_ACCOUNT = 5
    SIGN_IN_FAILURES_PER_ADDRESS = 20
    SIGN_IN_WINDOW_MINUTES = 15
    # Reverse proxies in front of the app whose X-Forwarded-For/-Proto are trusted (0: none). The
    # per-address sign-in limit and the audit trail need the client's address, not the proxy's.
    TRUSTED_PROXIES = 0

    # Outbound mail (replies, acknowledgements, notifications).
    SMTP_HOST = None
    SMTP_PORT = 25
    SMTP_USER = None
    SMTP_PASSWORD = None
    SMTP_TLS = "none"  # none | starttls | ssl
    MAIL_FROM = "backdesk@localhost"
    MAIL_DOMAIN = "backdesk.example.com"

    # Inbound mail (intake).
    SMTP_INTAKE_HOST = "127.0.0.1"
    SMTP_INTAKE_PORT = 2525
    INTAKE_MAX_MESSAGE_BYTES = 25 * 1024 * 1024
    INTAKE_ACKS_PER_SENDER_HOUR = 5  # acknowledgements to one sender per hour, at most
    INTAKE_POLL_SECONDS = 60  # IMAP polling interval
    INTAKE_IMAP_MAX_PER_POLL = 1000  # unseen messages one IMAP poll takes; the rest wait for the next
    INTAKE_PROCESS_INLINE = False  # SMTP: file right after storing, before the 250 (tests, one-process setups)
    INTAKE_FILER_BATCH = 100  # stored emails the filer files per transaction, at most
    INTAKE_FILER_HOLD_SECONDS = 0.05  # SQLite: batches sized to hold the write lock about this long
    IMAP_HOST = None
    IMAP_PORT = 993
    IMAP_USER = None
    IMAP_PASSWORD = None
    IMAP_TLS = "ssl"  # none | starttls | ssl
    IMAP_FOLDER = "INBOX"

    # Background work.
    OUTBOX_RELAY_SECONDS = 2
    # The reconciler hands over again, every OUTBOX_RECONCILE_SECONDS, the jobs RQ has lost: handed
    # over more than OUTBOX_LEASE_SECONDS ago, not completed, and not waiting or running in Redis
    # (a worker silent for OUTBOX_LEASE_SECONDS is taken for dead).
    OUTBOX_RECONCILE_SECONDS = 30
    OUTBOX_LEASE_SECONDS = 60
    SLA_SWEEP_SECONDS = 30
    # The audit chain's periodic seal (entries are also sealed with each commit that wrote them).
    AUDIT_SEAL_SECONDS = 60
    AUTO_CLOSE_SECONDS = 900  # how often resolved items past their team's auto-close days are closed
    NOTIFICATION_DIGEST_SECONDS = 3600  # how often the scheduler looks for digests a day old
    # Hand jobs to RQ right after each commit (the relay catches up on anything missed).
    OUTBOX_DELIVER_ON_COMMIT = True
    # Where people reach Backdesk: the links in mail (items, password reset, invitations) start with it.
    BASE_URL = "http://127.0.0.1:5000"

    # API tokens expire this many days after they are issued.
    API_TOKEN_DAYS = 90

    # Two-step sign-in: the name authenticator apps show, and how long the step between a right
    # password and its code (or enrolment, for a role that requires it) may take.
    MFA_ISSUER = "Backdesk"
    SIGN_IN_CODE_MINUTES = 5
    # Password reset links live PASSWORD_RESET_MINUTES, invitations INVITATION_DAYS; reset requests
    # are limited per email asked for and per client address, per hour.
    PASSWORD_RESET_MINUTES = 60
    INVITATION_DAYS = 7
    PASSWORD_RESET_REQUESTS_PER_ACCOUNT = 3
    PASSWORD_RESET_REQUESTS_PER_ADDRESS = 10

    # Settings read from the environment variable of the same name, with the class value as default.
    ENV_SETTINGS = {
        "SECRET_KEY": env_str, "REDIS_URL": env_str, "LOG_LEVEL": env_str, "MAX_CONTENT_LENGTH": env_int,
        "SMTP_HOST": env_str, "SMTP_PORT": env_int, "SMTP_USER": env_str, "SMTP_PASSWORD": env_str,
        "SMTP_TLS": env_str, "MAIL_FROM": env_str, "MAIL_DOMAIN": env_str,
        "SMTP_INTAKE_HOST": env_str, "SMTP_INTAKE_PORT": env_int, "INTAKE_MAX_MESSAGE_BYTES": env_int,
        "INTAKE_ACKS_PER_SENDER_HOUR": env_int, "INTAKE_POLL_SECONDS": env_int,
        "INTAKE_IMAP_MAX_PER_POLL": env_int,
        "INTAKE_PROCESS_INLINE": env_bool, "INTAKE_FILER_BATCH": env_int,
        "IMAP_HOST": env_str, "IMAP_PORT": env_int, "IMAP_USER": env_str, "IMAP_PASSWORD": env_str,
        "IMAP_TLS": env_str, "IMAP_FOLDER": env_str,
        "OUTBOX_RELAY_SECONDS": env_int, "OUTBOX_RECONCILE_SECONDS": env_int,
        "OUTBOX_LEASE_SECONDS": env_int, "SLA_SWEEP_SECONDS": env_int, "OUTBOX_DELIVER_ON_COMMIT": env_bool,
        "AUDIT_SEAL_SECONDS": env_int, "AUTO_CLOSE_SECONDS": env_int, "NOTIFICATION_DIGEST_SECONDS": env_int,
        "BASE_URL": env_str, "API_TOKEN_DAYS": env_int,
        "SESSION_IDLE_MINUTES": env_int, "SESSION_MAX_HOURS": env_int,
        "SIGN_IN_FAILURES_PER_ACCOUNT": env_int, "SIGN_IN_FAILURES_PER_ADDRESS": env_int,
        "SIGN_IN_WINDOW_MINUTES": env_int, "TRUSTED_PROXIES": env_int,
        "MFA_ISSUER": env_str, "SIGN_IN_CODE_MINUTES": env_int, "PASSWORD_RESET_MINUTES": env_int,
        "INVITATION_DAYS": env_int, "PASSWORD_RESET_REQUESTS_PER_ACCOUNT": env_int,
        "PASSWORD_RESET_REQUESTS_PER_ADDRESS": env_int,
    }

    @classmethod
    def load(cls):
        """Read the environment into a new instance (at app creation, not at import)."""
        cfg = cls()
        for name, parse in cls.ENV_SETTINGS.items():
            setattr(cfg, name, parse(name, getattr(cls, name)))
        cfg.SQLALCHEMY_DATABASE_URI = normalise_database_url(env_str("DATABASE_URL", _default_database_url()))
        cfg.LOG_LEVEL = cfg.LOG_LEVEL.upper()
        cfg.INSTANCE_DIR = str(INSTANCE_DIR)
        cfg.finish()
        if cfg.API_TOKEN_DAYS < 1:
            raise ConfigError("API_TOKEN_DAYS must be at least 1")
        # Neither the session cookie nor Flask-Login's remember-me cookie outlives a session.
        cfg.PERMANENT_SESSION_LIFETIME = cfg.REMEMBER_COOKIE_DURATION = timedelta(hours=cfg.SESSION_MAX_HOURS)
        for name in ("SESSION_IDLE_MINUTES", "SESSION_MAX_HOURS", "SIGN_IN_FAILURES_PER_ACCOUNT",
                     "SIGN_IN_FAILURES_PER_ADDRESS", "SIGN_IN_WINDOW_MINUTES", "SIGN_IN_CODE_MINUTES",
                     "PASSWORD_RESET_MINUTES", "INVITATION_DAYS", "PASSWORD_RESET_REQUESTS_PER_ACCOUNT",
                     "PASSWORD_RESET_REQUESTS_PER_ADDRESS"):
            if getattr(cfg, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if not cfg.BASE_URL.startswith(("http://", "https://")):
            raise ConfigError("BASE_URL must start with http:// or https://")
        for tls_setting in ("SMTP_TLS", "IMAP_TLS"):
            if getattr(cfg, tls_setting) not in ("none", "starttls", "ssl"):
                raise ConfigError(f"{tls_setting} must be one of none, starttls, ssl")
        return cfg

    def finish(self):
        """Per-environment adjustments after the environment has been read."""

    def as_dict(self):
        return {k: getattr(self, k) for k in dir(self) if k.isupper()}


def normalise_database_url(url):
    """Accept the usual postgres:// spellings and use psycopg 3 for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class DevelopmentConfig(Config):
    ENV_NAME = "development"

    def finish(self):
        if not self.SECRET_KEY:
            self.SECRET_KEY = _development_secret_key()


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True

    def finish(self):
        self.SECRET_KEY = self.SECRET_KEY or "test-only-secret"
        self.LOG_LEVEL = env_str("LOG_LEVEL", "WARNING").upper()


class ProductionConfig(Config):
    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    SEND_HSTS = True

    def finish(self):
        if not self.SECRET_KEY or len(self.SECRET_KEY) < 32:
            raise ConfigError("SECRET_KEY must be set to a random value of at least 32 characters in production")
        if not os.environ.get("REDIS_URL"):
            raise ConfigError("REDIS_URL must be set in production")
        if not os.environ.get("DATABASE_URL"):
            raise ConfigError("DATABASE_URL must be set in production")


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_environment():
    name = env_str("BACKDESK_ENV", "development")
    if name not in CONFIGS:
        raise ConfigError(f"BACKDESK_ENV must be one of {', '.join(CONFIGS)}, got {name!r}")
    return CONFIGS[name].load()
