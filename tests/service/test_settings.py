"""Settings come from flags, then STOCKGUARD_* variables, then the TOML file, then
defaults (docs/configuration.md)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stockguard.cli import app
from stockguard.config import SETTINGS_FILE_ENV, Settings, settings_markdown


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


def test_settings_survive_the_trip_to_a_worker_without_entering_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``serve`` hands its workers a file only its user can read, secrets included; the
    environment names the file, never a token."""
    chosen = Settings(
        database_url="postgresql://u@db/shop",
        strategy="coalescing",
        admin_token="a-secret",
        api_token="b-secret",
        workers=4,
        sweep_interval_s=0.5,
        pool_size=7,
        migrate=False,
        admission={"queue_wait_s_max": 1.5},
        strategy_options={"batch_size_max": 500},
    )
    handed = tmp_path / "settings.json"
    chosen.write_for_workers(handed)
    monkeypatch.setenv(SETTINGS_FILE_ENV, str(handed))

    assert Settings.for_worker() == chosen
    assert stat.S_IMODE(handed.stat().st_mode) == 0o600
    assert "a-secret" not in chosen.model_dump_json()  # masked everywhere else


def test_a_toml_file_sits_under_variables_and_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "stockguard.toml"
    config.write_text(
        'strategy = "sharded"\nport = 9100\nworkers = 3\n\n'
        "[admission]\nqueue_wait_s_max = 0.5\n\n[strategy_options]\nbuckets = 8\n"
    )
    monkeypatch.setenv("STOCKGUARD_WORKERS", "2")
    monkeypatch.setenv("STOCKGUARD_ADMISSION__RETRY_AFTER_S", "3")

    settings = Settings.load(config, port=9200)

    assert (settings.strategy, settings.port, settings.workers) == ("sharded", 9200, 2)
    assert settings.admission.queue_wait_s_max == 0.5
    assert settings.admission.retry_after_s == 3
    assert settings.engine_options()["buckets"] == 8
    assert settings.engine_options()["admission"].queue_wait_s_max == 0.5


def test_an_option_the_strategy_does_not_take_is_refused() -> None:
    with pytest.raises(ValueError, match="takes no option buckets"):
        Settings(strategy="coalescing", strategy_options={"buckets": 4})


def test_docs_configuration_is_the_generated_table() -> None:
    """docs/configuration.md ends with ``stockguard config --markdown``'s table."""
    document = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    assert document.endswith(settings_markdown())


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
