"""Every setting of stockguard, in one tree: flags, then ``STOCKGUARD_*`` variables, then
an optional TOML file (``--config`` or ``STOCKGUARD_CONFIG``), then defaults.

The top level is the service and its stores (``STOCKGUARD_DATABASE_URL``,
``STOCKGUARD_STRATEGY``, …); the tunables of admission control and of the strategies are
nested tables (``[admission]`` in the file, ``STOCKGUARD_ADMISSION__QUEUE_WAIT_S_MAX`` in
the environment). ``docs/configuration.md`` is generated from this model
(``stockguard config --markdown``), so the table cannot drift from the code.

``stockguard serve`` resolves the settings once and hands them to its worker processes
as a file only the owner may read (``STOCKGUARD_SETTINGS_FILE`` names it), so a generated
admin token never enters the environment that process listings show.
"""

from __future__ import annotations

import contextlib
import inspect
import ipaddress
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from stockguard import admission, strategies
from stockguard.admission import AdmissionLimits
from stockguard.domain import InvalidInput
from stockguard.domain.events import EventType, parse_event_types
from stockguard.domain.locations import AllocationPolicy
from stockguard.engine import DEFAULT_DATABASE_URL
from stockguard.stores.redis.keys import PREFIX_DEFAULT
from stockguard.tracing import TracesMode

ENV_PREFIX = "STOCKGUARD_"
WORKERS_MAX = 64
SWEEP_INTERVAL_S_MAX = 3_600.0
POOL_SIZE_MAX = 200
TIMEOUT_S_MAX = 300.0
CONNECTIONS_MAX = 100_000
CONFIG_ENV = "STOCKGUARD_CONFIG"
"""Names the TOML settings file when ``--config`` does not."""
SETTINGS_FILE_ENV = "STOCKGUARD_SETTINGS_FILE"
"""Set by ``serve`` for its workers: the resolved settings, readable by the owner only."""
LogFormat = Literal["json", "logfmt"]
AllocationPolicyName = Literal["priority", "most_available"]
"""``domain.locations.AllocationPolicy``'s names (docs/locations.md#allocation-policy)."""
assert set(get_args(AllocationPolicyName)) == {policy.value for policy in AllocationPolicy}

_config_file: ContextVar[Path | None] = ContextVar("stockguard_config_file", default=None)


class AdmissionSettings(BaseModel):
    """Admission control in front of every strategy (docs/design.md#admission)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    in_flight_max: int = Field(default=admission.IN_FLIGHT_MAX, ge=1, le=10_000_000)
    """Reservations in flight in one process; more are answered 429 at once."""
    in_flight_per_sku_max: int = Field(default=admission.IN_FLIGHT_PER_SKU_MAX, ge=1, le=10_000_000)
    """Reservations in flight that need any one SKU."""
    queue_wait_s_max: float = Field(default=admission.QUEUE_WAIT_S_MAX, ge=0, le=3_600)
    """Wait budget: a request that cannot expect an answer within it is refused 429
    before anything is written; 0 turns the budget off."""
    sold_out_ttl_ms: int = Field(default=admission.SOLD_OUT_TTL_MS, ge=0, le=60_000)
    """How long a sold-out mark learned here is believed; 0 turns the fast path off."""
    retry_after_s: int = Field(default=admission.RETRY_AFTER_S, ge=1, le=3_600)
    """The least ``Retry-After`` of a 429."""

    def limits(self) -> AdmissionLimits:
        return AdmissionLimits(**self.model_dump())


class StrategyOptions(BaseModel):
    """Options of the strategies that take them; unset means the strategy's default."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    batch_size_max: int | None = Field(default=None, ge=1, le=10_000)
    """coalescing, queue: requests one writer turns into one transaction."""
    queue_depth_max: int | None = Field(default=None, ge=1, le=1_000_000)
    """coalescing, queue: requests waiting for a writer before new ones are refused."""
    group_count: int | None = Field(default=None, ge=1, le=64)
    """coalescing: writers, each owning a group of SKUs."""
    buckets: int | None = Field(default=None, ge=1, le=64)
    """sharded: buckets each SKU's stock is split into."""
    retry_max: int | None = Field(default=None, ge=1, le=1_000)
    """optimistic: attempts before a version conflict is answered 429."""
    partitions: int | None = Field(default=None, ge=1, le=64)
    """queue: broker partitions (each SKU belongs to one)."""

    def for_strategy(self, name: str) -> dict[str, Any]:
        """The options set here, checked against what strategy ``name`` takes."""
        given = {key: value for key, value in self.model_dump().items() if value is not None}
        taken = inspect.signature(strategies.strategy_class(name).__init__).parameters
        unknown = sorted(set(given) - set(taken))
        if unknown:
            raise ValueError(f"strategy {name!r} takes no option {', '.join(unknown)}")
        return given


class EventsSettings(BaseModel):
    """Stock events: the transactional outbox and its relay (docs/events.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    types: str = Field(default="all", max_length=400)
    """Event types written to the outbox with each change: ``all``, ``none``, ``stock``
    (every ``stock.*`` type but no per-reservation events, for the hottest shops), or a
    comma-separated list of types such as ``stock.sold_out,stock.back_in_stock``."""

    relay: bool = True
    """Run the relay inside ``serve``: every worker stands by and the one holding the lease
    in the database works. Turn off where a ``stockguard relay`` process does the job
    (both at once are safe: the lease still lets one work)."""
    poll_interval_s: float = Field(default=0.1, ge=0.01, le=5)
    """How often the relay looks for newly committed events: the floor of the delivery
    latency, one indexed query per interval."""
    lease_s: float = Field(default=5.0, ge=0.5, le=600)
    """How long the relay's lease lasts unrenewed: a killed relay is replaced this long
    after its last renewal (it renews four times per lease)."""
    retention_s: float = Field(default=86_400.0, ge=1, le=30 * 86_400)
    """Events every sink has delivered are deleted from the outbox once this old; the pull
    feed can page back this far."""
    retention_max_s: float = Field(default=7 * 86_400.0, ge=1, le=90 * 86_400)
    """Any event, delivered or not, is deleted once this old (an endpoint down longer
    misses it): what bounds the outbox and the dead letters."""
    webhook_attempts_max: int = Field(default=12, ge=1, le=100)
    """Attempts at an endpoint's head event before it is dead-lettered and the next event
    goes (the head blocks the ones after it until then)."""
    webhook_backoff_s: float = Field(default=0.5, ge=0.01, le=600)
    """The wait after the first failed attempt; it doubles after each, with jitter."""
    webhook_backoff_max_s: float = Field(default=60.0, ge=0.01, le=3_600)
    """The longest wait between two attempts at one event."""
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    """An endpoint must answer a POST within this long, else the attempt failed."""
    nats_url: str | None = Field(default=None, max_length=400)
    """NATS server of the JetStream sink, e.g. nats://127.0.0.1:4222; unset: no NATS."""
    nats_stream: str = Field(default="STOCKGUARD", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """JetStream stream the events go to, created if missing (subjects ``<prefix>.>``)."""
    nats_subject_prefix: str = Field(default="stockguard", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """First token of every subject: ``<prefix>.<type>.<SKU or reservation id>``."""

    @field_validator("types")
    @classmethod
    def _known_types(cls, given: str) -> str:
        try:
            parse_event_types(given)
        except InvalidInput as error:
            raise ValueError(error.reason) from None
        return given

    def recorded(self) -> frozenset[EventType]:
        return parse_event_types(self.types)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
    )

    database_url: str = DEFAULT_DATABASE_URL
    """sqlite:///path.db, postgresql://user@host/db or mysql://user@host/db."""
    redis_url: str | None = None
    """Redis of the redis and queue strategies, e.g. redis://127.0.0.1:6379/0."""
    redis_prefix: str = Field(default=PREFIX_DEFAULT, min_length=1, max_length=64)
    """Key prefix in Redis: every process serving one shop uses the same."""
    strategy: str = strategies.DEFAULT_STRATEGY
    """How concurrent holds on one SKU are serialised (docs/design.md#strategies)."""
    admin_token: SecretStr | None = None
    """Bearer token of the admin routes; without one every admin route answers 401."""
    api_token: SecretStr | None = None
    """Bearer token of the reservation and stock-read routes; unset: they are open."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = Field(default=8000, ge=1, le=65_535)
    """Port to listen on."""
    workers: int = Field(default=1, ge=1, le=WORKERS_MAX)
    """Processes serving the one port, all correct together."""
    sweep_interval_s: float = Field(default=1.0, gt=0, le=SWEEP_INTERVAL_S_MAX)
    """Seconds between expiry sweeps of each process (a confirm after expires_at is
    refused whether or not a sweep has run)."""
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
    audit_interval_s: float = Field(default=60.0, ge=0, le=86_400)
    """Seconds between live audits of I1-I4 in each process (``GET /v1/audit``); 0 turns
    them off. A pass reads a few indexed aggregates per table in one snapshot."""
    access_log: bool = False
    """One line per request on stdout (in ``log_format``, with its request id). Off by
    default: at thousands of requests a second the line costs more than the reservation
    it describes."""
    traces: TracesMode = "off"
    """OpenTelemetry spans of each request: HTTP, engine, strategy batch, database
    transaction (docs/operations.md#traces). ``otlp`` exports them where the standard
    ``OTEL_EXPORTER_OTLP_*`` variables say (needs an OTLP exporter package), ``console``
    prints them. Needs the ``otel`` extra; ``off`` imports none of it and costs nothing."""
    log_format: LogFormat = "json"
    """Every log line, the server's included: ``json`` (one object a line) or ``logfmt``
    (key=value pairs), each with timestamp, level and logger."""
    data_dir: Path | None = None
    """Where ``serve`` keeps the admin token it generates when none is set (file
    ``admin-token``, mode 0600). Unset: ``$STATE_DIRECTORY`` (systemd's StateDirectory=),
    else ``$XDG_STATE_HOME/stockguard``, else ``~/.local/state/stockguard``."""
    forwarded_allow_ips: str = ""
    """Comma-separated addresses or networks of the proxies in front (e.g. ``127.0.0.1``):
    only a request from one of them is believed when its ``X-Forwarded-Proto`` says https
    (the admin cookie is then ``Secure``). Empty: no proxy is believed, only the
    connection's own scheme counts (granian has no proxy-headers option of its own)."""
    database_wait_s: float = Field(default=10.0, ge=0, le=TIMEOUT_S_MAX)
    """How long ``serve`` waits at start for a database that is not up yet (refused, not
    found, timed out), counting down on stderr; one that refuses the login fails at once."""
    allocation_policy: AllocationPolicyName = "priority"
    """How a line of a SKU stocked at several locations draws when its request names no
    ``allocation_policy`` (docs/locations.md#allocation-policy): ``priority`` fills from
    the location with the lowest priority number first, ``most_available`` from the one
    with the most available first."""
    migrate: bool = True
    """Migrate on startup. ``serve`` migrates once in its parent and turns this off for
    its workers, so N workers never race on the schema."""
    admission: AdmissionSettings = AdmissionSettings()
    strategy_options: StrategyOptions = StrategyOptions()
    events: EventsSettings = EventsSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init) over variables over the TOML file over defaults."""
        path = _config_file.get() or (
            Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None
        )
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if path is not None:
            if not path.is_file():
                raise ValueError(f"config file {path} does not exist")
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=path),)
        return sources

    @classmethod
    def load(cls, config_file: Path | None = None, **flags: Any) -> Settings:
        """Settings from ``flags`` (None: not given) over the environment over
        ``config_file`` (else ``STOCKGUARD_CONFIG``'s) over defaults."""
        token = _config_file.set(config_file)
        try:
            return cls(**{name: value for name, value in flags.items() if value is not None})
        finally:
            _config_file.reset(token)

    @classmethod
    def for_worker(cls) -> Settings:
        """A worker's settings: the file ``serve`` wrote, else the environment."""
        path = os.environ.get(SETTINGS_FILE_ENV)
        if path:
            return cls.model_validate_json(Path(path).read_text())
        return cls()

    def write_for_workers(self, path: Path) -> None:
        """Writes these settings, secrets included, to ``path`` (mode 0600)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.model_dump_json(context={"secrets": True}))

    @field_serializer("admin_token", "api_token", when_used="json")
    def _token(self, token: SecretStr | None, info: FieldSerializationInfo) -> str | None:
        """Masked, except in the file ``serve`` hands its workers."""
        if token is None:
            return None
        reveal = isinstance(info.context, dict) and info.context.get("secrets")
        return token.get_secret_value() if reveal else str(token)

    @model_validator(mode="after")
    def _options_fit_the_strategy(self) -> Settings:
        # A strategy whose package is missing cannot run here at all: serve's start-up
        # check says which extra installs it (service/startup.py).
        with contextlib.suppress(ModuleNotFoundError):
            self.strategy_options.for_strategy(self.strategy)
        return self

    def engine_options(self) -> dict[str, Any]:
        """What ``Engine.open`` takes besides the URL and strategy."""
        options: dict[str, Any] = {
            "migrate": self.migrate,
            "pool_size": self.pool_size,
            "redis_url": self.redis_url,
            "admission": self.admission.limits(),
            "events": self.events.recorded(),
            "allocation_policy": self.allocation_policy,
            **self.strategy_options.for_strategy(self.strategy),
        }
        if "redis" in strategies.strategy_class(self.strategy).requires:
            options["key_prefix"] = self.redis_prefix
        return options

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        if name not in strategies.names():
            raise ValueError(f"unknown strategy {name!r}; choose one of {strategies.names()}")
        return name

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _addresses(cls, given: str) -> str:
        for part in given.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError names it
        return given

    def trusted_proxies(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in self.forwarded_allow_ips.split(",")
            if part.strip()
        )

    @field_validator("admin_token", "api_token")
    @classmethod
    def _blank_is_unset(cls, token: SecretStr | None) -> SecretStr | None:
        return token if token is not None and token.get_secret_value() else None


def settings_markdown() -> str:
    """Every setting as a Markdown table: the variable, the file key, default, meaning."""
    lines = [
        "| variable | in the TOML file | default | meaning |",
        "| --- | --- | --- | --- |",
    ]

    def walk(model: type[BaseModel], env: str, key: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{env}{name.upper()}__", f"[{name}] ")
                continue
            default = field.default
            shown = "unset" if default is None else f"`{default}`"
            meaning = " ".join((field.description or "").split())
            lines.append(f"| `{env}{name.upper()}` | `{key}{name}` | {shown} | {meaning} |")

    walk(Settings, ENV_PREFIX, "")
    return "\n".join(lines) + "\n"
