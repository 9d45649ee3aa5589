"""Service settings: flags, then ``STOCKGUARD_*`` environment variables, then defaults.

``stockguard serve`` builds one ``Settings`` from its flags over the environment, then
writes the result back into the environment, because uvicorn's worker processes are
fresh interpreters that can only learn their settings from there (DESIGN §5).
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stockguard import strategies
from stockguard.engine import DEFAULT_DATABASE_URL

ENV_PREFIX = "STOCKGUARD_"
WORKERS_MAX = 64
SWEEP_INTERVAL_S_MAX = 3_600.0
POOL_SIZE_MAX = 200
TIMEOUT_S_MAX = 300.0
CONNECTIONS_MAX = 100_000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    strategy: str = strategies.DEFAULT_STRATEGY
    admin_token: SecretStr | None = None
    """Bearer token of the admin routes; without one every admin route answers 401."""
    api_token: SecretStr | None = None
    """Bearer token of the reservation and stock-read routes; unset: they are open."""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65_535)
    workers: int = Field(default=1, ge=1, le=WORKERS_MAX)
    sweep_interval_s: float = Field(default=1.0, gt=0, le=SWEEP_INTERVAL_S_MAX)
    pool_size: int | None = Field(default=None, ge=1, le=POOL_SIZE_MAX)
    """Database connections per process; unset: the backend's default."""
    connections_max: int = Field(default=10_000, ge=1, le=CONNECTIONS_MAX)
    """Connections one worker serves at once; more wait in the kernel's accept queue.
    A flash sale opens thousands at the same second (the server's default of 2,048 left
    the rest of a 5,000-buyer burst timing out in connect)."""
    header_read_s_max: float = Field(default=10.0, gt=0, le=TIMEOUT_S_MAX)
    """A connection must send a whole request head this long after it opens (or after its
    previous answer), else it is closed: idle and slowloris sockets hold nothing."""
    body_read_s_max: float = Field(default=10.0, gt=0, le=TIMEOUT_S_MAX)
    """A request's body must arrive within this long, else 408 and the connection closes."""
    access_log: bool = False
    """One JSON line per request on stdout. Off by default: at thousands of requests a
    second the line costs more than the reservation it describes."""
    migrate: bool = True
    """Migrate on startup. ``serve`` migrates once in its parent and turns this off for
    its workers, so N workers never race on the schema."""

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        if name not in strategies.names():
            raise ValueError(f"unknown strategy {name!r}; choose one of {strategies.names()}")
        return name

    @field_validator("admin_token", "api_token")
    @classmethod
    def _blank_is_unset(cls, token: SecretStr | None) -> SecretStr | None:
        return token if token is not None and token.get_secret_value() else None

    def to_env(self) -> dict[str, str]:
        """These settings as ``STOCKGUARD_*`` variables, for worker processes to read."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
        return env
