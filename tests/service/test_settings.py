"""Settings come from flags, then STOCKGUARD_* variables, then defaults (DESIGN §5)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from stockguard.cli import app
from stockguard.config import Settings


def test_defaults_are_the_embedded_database_and_the_default_strategy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("DATABASE_URL", "STRATEGY", "ADMIN_TOKEN", "API_TOKEN", "PORT", "WORKERS"):
        monkeypatch.delenv(f"STOCKGUARD_{name}", raising=False)

    settings = Settings()

    assert settings.database_url == "sqlite:///./stockguard.db"
    assert settings.strategy == "coalescing"
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.sweep_interval_s == 1.0
    assert settings.admin_token is None and settings.api_token is None


def test_variables_override_defaults_and_explicit_values_override_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STOCKGUARD_PORT", "9001")
    monkeypatch.setenv("STOCKGUARD_WORKERS", "3")
    monkeypatch.setenv("STOCKGUARD_ADMIN_TOKEN", "from-env")

    settings = Settings(port=9002)

    assert settings.port == 9002
    assert settings.workers == 3
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "from-env"


def test_settings_survive_the_trip_through_the_environment_to_a_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``serve`` hands settings to worker processes as variables; they must read back equal."""
    chosen = Settings(
        database_url="postgresql://u@db/shop",
        strategy="pessimistic",
        admin_token="a",
        api_token="b",
        workers=4,
        sweep_interval_s=0.5,
        pool_size=7,
        migrate=False,
    )
    for name, value in chosen.to_env().items():
        monkeypatch.setenv(name, value)

    assert Settings() == chosen


def test_an_empty_token_variable_means_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKGUARD_API_TOKEN", "")

    assert Settings().api_token is None


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--strategy", "fastest"], {}),
        ([], {"STOCKGUARD_STRATEGY": "fastest"}),
        (["--workers", "0"], {}),
        (["--sweep-interval-s", "0"], {}),
        ([], {"STOCKGUARD_PORT": "99999"}),
    ],
)
def test_serve_refuses_an_invalid_setting_before_starting_anything(
    args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STOCKGUARD_STRATEGY", raising=False)
    monkeypatch.delenv("STOCKGUARD_PORT", raising=False)

    result = CliRunner().invoke(app, ["serve", *args], env=env)

    assert result.exit_code == 2
    assert "invalid setting" in result.output
