"""``stockguard verify`` (also ``python -m stockguard.verify``): fault runs longer than the
tests make, and re-checks (docs/reliability.md).

    stockguard verify faults --fault db-reset --backend postgres \\
        --strategy coalescing --duration 60 --interval-s 0.5 --out runs/db-reset
    stockguard verify check runs/db-reset

``faults`` runs one fault (``stockguard.verify.faults``), prints the checker's summary and
a JSON row for docs/reliability.md, and keeps the history (``history.jsonl``) and the
final state (``final.json``) in ``--out``; ``check`` checks such a directory again.
Exit code 0 when the history is valid, 1 when the checker found anomalies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from stockguard import strategies
from stockguard.verify.checker import FinalState, check
from stockguard.verify.faults import AOF_SETTINGS, FAULTS, FaultRun, run_fault
from stockguard.verify.history import History
from stockguard.verify.load import LoadPlan

HELP = (
    "Prove stockguard under faults (docs/reliability.md): run a recorded mixed load against "
    "a real serve while one fault is injected, then check the history against the final "
    "state (nothing acknowledged lost, nothing oversold; operations without an answer may "
    "or may not have happened, as in Jepsen).\n\n"
    "`faults` runs one fault and prints the checker's summary and a JSON row; `check` checks "
    "a kept run again. Exit code 0 when the history is valid (or, for Redis without AOF, its "
    "losses within the documented bound), 1 otherwise."
)
app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)


def _save(out: Path, history: History, final: FinalState) -> None:
    out.mkdir(parents=True, exist_ok=True)
    history.save(out / "history.jsonl")
    (out / "final.json").write_text(json.dumps(dataclasses.asdict(final)))


@app.command()
def faults(
    fault: Annotated[
        str,
        typer.Option(
            help=f"One of: {', '.join(FAULTS)} (what each does: docs/reliability.md, "
            "stockguard.verify.faults)."
        ),
    ] = "none",
    backend: Annotated[
        str,
        typer.Option(
            help="sqlite (a file), postgres or mysql (a new database on the server of "
            "STOCKGUARD_TEST_POSTGRES_URL / STOCKGUARD_TEST_MYSQL_URL, dropped afterwards)."
        ),
    ] = "postgres",
    strategy: Annotated[
        str, typer.Option(help=f"serve --strategy: {', '.join(strategies.names())}.")
    ] = "coalescing",
    workers: Annotated[int, typer.Option(help="serve --workers.")] = 1,
    clients: Annotated[int, typer.Option(help="Concurrent logical clients.")] = 8,
    ops: Annotated[
        int,
        typer.Option(help="Operations per client that reach serve (without --duration)."),
    ] = 60,
    duration: Annotated[
        float | None, typer.Option(help="Seconds of load instead of --ops.")
    ] = None,
    interval_s: Annotated[
        float,
        typer.Option(
            help="Seconds between injections; also how long a blackhole (partition) or a "
            "full disk lasts."
        ),
    ] = 1.0,
    interval_ops: Annotated[
        int | None,
        typer.Option(
            help="Inject after every this many operations instead of every --interval-s "
            "(the injection count then depends on the load, not the machine's speed)."
        ),
    ] = None,
    injections_max: Annotated[
        int | None, typer.Option(help="Stop injecting after this many (default: no limit).")
    ] = None,
    pool_size: Annotated[
        int | None,
        typer.Option(
            help="serve's database connections per process (STOCKGUARD_POOL_SIZE; default: "
            "serve's own, 20)."
        ),
    ] = None,
    latency_ms: Annotated[
        tuple[float, float],
        typer.Option(help="db-latency: each chunk waits a uniform LOW..HIGH ms, each way."),
    ] = (50.0, 500.0),
    aof: Annotated[
        str,
        typer.Option(
            help=f"redis-restart: the own redis-server's persistence, {', '.join(AOF_SETTINGS)}"
            " (no: it restarts empty and is reloaded from SQL; losing at most the "
            "persister's lag is then allowed)."
        ),
    ] = "always",
    sweep_kills: Annotated[
        bool,
        typer.Option(
            "--sweep-kills",
            help="serve-kill on postgres: the first kill and every second one after it wait "
            "until an expiry sweep is inside its transaction (the load pauses around them); "
            "the others land mid-load.",
        ),
    ] = False,
    skus: Annotated[int, typer.Option(help="SKUs the load spreads over.")] = 4,
    on_hand: Annotated[int, typer.Option(help="Units each SKU starts with.")] = 40,
    seed: Annotated[
        int, typer.Option(help="Seed of the clients' choices (same seed, same requests).")
    ] = 18,
    timeout_s: Annotated[
        float, typer.Option(help="A client's wait for one answer (then: indeterminate).")
    ] = 5.0,
    out: Annotated[
        Path | None,
        typer.Option(help="Keep history.jsonl and final.json here, for `check`."),
    ] = None,
) -> None:
    """Run a mixed load against a real serve under one fault, then check the history."""
    if fault not in FAULTS:
        raise typer.BadParameter(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
    if aof not in AOF_SETTINGS:
        raise typer.BadParameter(f"unknown --aof {aof!r}; one of {', '.join(AOF_SETTINGS)}")
    plan = LoadPlan(
        clients=clients,
        ops_per_client=ops,
        duration_s=duration,
        skus=skus,
        on_hand=on_hand,
        seed=seed,
        request_timeout_s=timeout_s,
    )
    run = FaultRun(
        fault, backend, strategy, workers, plan, interval_s, interval_ops,
        pool_size=pool_size, injections_max=injections_max,
        latency_s=(latency_ms[0] / 1000, latency_ms[1] / 1000), aof=aof, sweep_kills=sweep_kills,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="stockguard-verify-") as workdir:
        result = asyncio.run(run_fault(run, Path(workdir)))
    print(result.report.summary())
    for anomaly in result.report.anomalies[:50]:
        print(f"  {anomaly.check}: {anomaly.detail}")
    for note in result.notes:
        print(f"  note: {note}")
    print(json.dumps(result.row()))
    if out is not None:
        _save(out, result.history, result.final)
    raise typer.Exit(0 if result.report.valid or result.within_loss_bound() else 1)


@app.command("check")
def check_command(
    directory: Annotated[
        Path, typer.Argument(help="A directory `faults --out` wrote (history and final state).")
    ],
) -> None:
    """Check a kept history against its final state again."""
    history = History.load(directory / "history.jsonl")
    final = FinalState(**json.loads((directory / "final.json").read_text()))
    report = check(history, final)
    print(report.summary())
    for anomaly in report.anomalies[:50]:
        print(f"  {anomaly.check}: {anomaly.detail}")
    raise typer.Exit(0 if report.valid else 1)
