from __future__ import annotations

import pytest
from pydantic import ValidationError

from forecaster.settings import Settings


def test_defaults_need_no_environment():
    settings = Settings(_env_file=None)
    assert settings.redis_url is None and settings.finnhub_api_key is None
    assert (settings.finnhub_calls_per_minute, settings.finnhub_calls_per_second) == (60, 30)


def test_reads_the_environment_and_dotenv(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("FINNHUB_API_KEY=from-dotenv-123\nREDIS_URL=redis://localhost:6379/3\n")
    monkeypatch.setenv("FINNHUB_API_URL", "http://127.0.0.1:8080/api/v1")
    settings = Settings(_env_file=tmp_path / ".env")
    assert settings.finnhub_api_key.get_secret_value() == "from-dotenv-123"
    assert settings.redis_url == "redis://localhost:6379/3"
    assert str(settings.finnhub_api_url) == "http://127.0.0.1:8080/api/v1"


def test_secrets_never_show_in_repr_or_str(monkeypatch):
    monkeypatch.setenv("FINNHUB_API_KEY", "sekrit-finnhub-key")
    settings = Settings(_env_file=None)
    assert "sekrit" not in repr(settings) and "sekrit" not in str(settings)
    assert "sekrit" not in settings.model_dump_json()


@pytest.mark.parametrize("placeholder", ["", "changeme", "your-key", "  "])
def test_placeholder_keys_count_as_no_key(monkeypatch, placeholder):
    monkeypatch.setenv("FINNHUB_API_KEY", placeholder)
    assert Settings(_env_file=None).finnhub_api_key is None


def test_snapshot_dir_must_exist(monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_SNAPSHOT_DIR", str(tmp_path / "nope"))
    with pytest.raises(ValidationError, match="forecaster data snapshot"):
        Settings(_env_file=None)
