"""``python -m stockguard.verify``: fault runs longer than the tests make, and re-checks.

    python -m stockguard.verify faults --fault db-reset --backend postgres \\
        --strategy coalescing --duration 60 --interval-s 0.5 --out runs/db-reset
    python -m stockguard.verify check runs/db-reset

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

from stockguard.verify.checker import FinalState, check
from stockguard.verify.faults import FAULTS, FaultRun, run_fault
from stockguard.verify.history import History
from stockguard.verify.load import LoadPlan

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


def _save(out: Path, history: History, final: FinalState) -> None:
    out.mkdir(parents=True, exist_ok=True)
    history.save(out / "history.jsonl")
    (out / "final.json").write_text(json.dumps(dataclasses.asdict(final)))


@app.command()
def faults(
    fault: Annotated[str, typer.Option(help=f"One of: {', '.join(FAULTS)}.")] = "none",
    backend: Annotated[str, typer.Option(help="sqlite, postgres or mysql.")] = "postgres",
    strategy: Annotated[str, typer.Option()] = "coalescing",
    workers: Annotated[int, typer.Option(help="serve --workers.")] = 1,
    clients: Annotated[int, typer.Option(help="Concurrent logical clients.")] = 8,
    ops: Annotated[int, typer.Option(help="Operations per client (without --duration).")] = 60,
    duration: Annotated[float | None, typer.Option(help="Seconds of load instead.")] = None,
    interval_s: Annotated[float, typer.Option(help="Seconds between injections.")] = 1.0,
    skus: Annotated[int, typer.Option()] = 4,
    on_hand: Annotated[int, typer.Option()] = 40,
    seed: Annotated[int, typer.Option()] = 18,
    timeout_s: Annotated[
        float, typer.Option(help="A client's wait for one answer (then: indeterminate).")
    ] = 5.0,
    out: Annotated[Path | None, typer.Option(help="Keep history and final state here.")] = None,
) -> None:
    """Run a mixed load against a real serve under one fault, then check the history."""
    if fault not in FAULTS:
        raise typer.BadParameter(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
    plan = LoadPlan(
        clients=clients,
        ops_per_client=ops,
        duration_s=duration,
        skus=skus,
        on_hand=on_hand,
        seed=seed,
        request_timeout_s=timeout_s,
    )
    run = FaultRun(fault, backend, strategy, workers, plan, interval_s)
    with tempfile.TemporaryDirectory(prefix="stockguard-verify-") as workdir:
        result = asyncio.run(run_fault(run, Path(workdir)))
    print(result.report.summary())
    for anomaly in result.report.anomalies[:50]:
        print(f"  {anomaly.check}: {anomaly.detail}")
    print(json.dumps(result.row()))
    if out is not None:
        _save(out, result.history, result.final)
    raise typer.Exit(0 if result.report.valid else 1)


@app.command("check")
def check_command(
    directory: Annotated[Path, typer.Argument(help="What faults --out kept.")],
) -> None:
    """Check a kept history against its final state again."""
    history = History.load(directory / "history.jsonl")
    final = FinalState(**json.loads((directory / "final.json").read_text()))
    report = check(history, final)
    print(report.summary())
    for anomaly in report.anomalies[:50]:
        print(f"  {anomaly.check}: {anomaly.detail}")
    raise typer.Exit(0 if report.valid else 1)
