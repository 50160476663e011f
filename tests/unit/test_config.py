"""Configuration: strict parsing, safe production settings, a stable development secret."""
import pytest

import config
from config import ConfigError, DevelopmentConfig, ProductionConfig, config_from_environment, env_bool, env_int

GOOD_SECRET = "s" * 40


@pytest.fixture
def production_env(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("DATABASE_URL", "postgresql://backdesk:secret@db.example.com/backdesk")
    return monkeypatch


def test_production_loads_with_everything_set(production_env):
    cfg = ProductionConfig.load()
    assert cfg.SECRET_KEY == GOOD_SECRET
    assert cfg.SQLALCHEMY_DATABASE_URI == "postgresql+psycopg://backdesk:secret@db.example.com/backdesk"
    assert cfg.SESSION_COOKIE_SECURE is True


@pytest.mark.parametrize("secret", [None, "", "too-short"])
def test_production_refuses_a_missing_or_short_secret_key(production_env, secret):
    if secret is None:
        production_env.delenv("SECRET_KEY")
    else:
        production_env.setenv("SECRET_KEY", secret)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        ProductionConfig.load()


@pytest.mark.parametrize("name", ["REDIS_URL", "DATABASE_URL"])
def test_production_refuses_missing_service_urls(production_env, name):
    production_env.delenv(name)
    with pytest.raises(ConfigError, match=name):
        ProductionConfig.load()


def test_backdesk_env_selects_the_class_and_rejects_unknown_names(production_env):
    production_env.setenv("BACKDESK_ENV", "production")
    assert config_from_environment().ENV_NAME == "production"
    production_env.setenv("BACKDESK_ENV", "staging")
    with pytest.raises(ConfigError, match="BACKDESK_ENV"):
        config_from_environment()


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), ("Yes", True), (" on ", True),
                                           ("0", False), ("false", False), ("NO", False), ("off", False)])
def test_env_bool_accepts_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("BACKDESK_FLAG", raw)
    assert env_bool("BACKDESK_FLAG") is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", "enabled"])
def test_env_bool_rejects_garbage(monkeypatch, raw):
    monkeypatch.setenv("BACKDESK_FLAG", raw)
    with pytest.raises(ConfigError, match="BACKDESK_FLAG"):
        env_bool("BACKDESK_FLAG")


def test_env_bool_and_env_int_defaults(monkeypatch):
    monkeypatch.delenv("BACKDESK_FLAG", raising=False)
    monkeypatch.delenv("BACKDESK_NUMBER", raising=False)
    assert env_bool("BACKDESK_FLAG", True) is True
    assert env_int("BACKDESK_NUMBER", 7) == 7
    monkeypatch.setenv("BACKDESK_NUMBER", "")
    assert env_int("BACKDESK_NUMBER", 7) == 7
    monkeypatch.setenv("BACKDESK_NUMBER", "42")
    assert env_int("BACKDESK_NUMBER", 7) == 42


@pytest.mark.parametrize("raw", ["ten", "1.5", "12abc", "0x10"])
def test_env_int_rejects_garbage(monkeypatch, raw):
    monkeypatch.setenv("BACKDESK_NUMBER", raw)
    with pytest.raises(ConfigError, match="BACKDESK_NUMBER"):
        env_int("BACKDESK_NUMBER", 1)


def test_a_malformed_setting_fails_at_load(monkeypatch):
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "lots")
    with pytest.raises(ConfigError, match="MAX_CONTENT_LENGTH"):
        DevelopmentConfig.load()


def test_tls_settings_are_checked(monkeypatch):
    monkeypatch.setenv("SMTP_TLS", "yes-please")
    with pytest.raises(ConfigError, match="SMTP_TLS"):
        DevelopmentConfig.load()


def test_development_generates_a_secret_key_once_and_reuses_it(monkeypatch, tmp_path):
    instance = tmp_path / "instance"
    monkeypatch.setattr(config, "INSTANCE_DIR", instance)
    monkeypatch.delenv("SECRET_KEY", raising=False)

    first = DevelopmentConfig.load()
    key_file = instance / "secret_key"
    assert key_file.read_text().strip() == first.SECRET_KEY
    assert len(first.SECRET_KEY) >= 32
    assert key_file.stat().st_mode & 0o777 == 0o600

    second = DevelopmentConfig.load()
    assert second.SECRET_KEY == first.SECRET_KEY


def test_development_prefers_an_explicit_secret_key(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "INSTANCE_DIR", tmp_path)
    monkeypatch.setenv("SECRET_KEY", GOOD_SECRET)
    assert DevelopmentConfig.load().SECRET_KEY == GOOD_SECRET
    assert not (tmp_path / "secret_key").exists()


def test_development_defaults_to_sqlite_in_the_instance_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "INSTANCE_DIR", tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    cfg = DevelopmentConfig.load()
    assert cfg.SQLALCHEMY_DATABASE_URI == f"sqlite:///{tmp_path / 'backdesk.db'}"
    assert cfg.INSTANCE_DIR == str(tmp_path)
