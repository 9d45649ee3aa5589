"""The live invariant audit of ``serve``: clean on a clean database, finds a planted
violation (and says which SKU, in the answer, the metric and the log), and never reports
one that is not there while sales go on (it reads one snapshot)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from stockguard.stores.sql.backend import backend_for

from .support import Api, AppFactory

WAVES = 15
BUYERS_PER_WAVE = 60


async def violations_metric(api: Api, invariant: str) -> float:
    text_ = (await api.client.get("/metrics")).text
    for line in text_.splitlines():
        if line.startswith(f'stockguard_invariant_violations{{invariant="{invariant}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no stockguard_invariant_violations for {invariant}")


async def test_a_clean_database_audits_clean(api: Api) -> None:
    await api.set_stock("A", 5)
    await api.reserve("o-1", {"A": 2})
    answer = await api.client.get("/v1/audit", headers=api.admin)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["ok"], body["violations"], body["oversold_units"]) == (True, [], 0)
    assert body["skus"] == 1
    assert await violations_metric(api, "I2") == 0
    assert (await api.client.get("/v1/audit")).status_code == 401  # admin only


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
async def test_a_planted_violation_is_found_named_and_counted(
    api: Api, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await api.set_stock("PLANTED", 5)
    engine = create_async_engine(backend_for(db_url).url)
    try:
        async with engine.begin() as connection:  # a hold that no reservation line explains
            await connection.execute(
                text("UPDATE stock_levels SET reserved = reserved + 1 WHERE sku = 'PLANTED'")
            )
    finally:
        await engine.dispose()

    with caplog.at_level(logging.ERROR, logger="stockguard.audit"):
        answer = await api.client.post("/v1/audit", headers=api.admin)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] is False
    assert any(v.startswith("I2 PLANTED") for v in body["violations"]), body
    assert await violations_metric(api, "I2") == 1
    assert any("PLANTED" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
async def test_audits_during_sales_never_see_a_violation_that_is_not_there(
    make_api: AppFactory,
) -> None:
    """Holds, confirms and releases commit between the audit's statements; read in one
    snapshot, every pass balances (at READ COMMITTED a hold committed between reading
    ``stock_levels`` and its lines would read as an I2 violation)."""
    async with make_api(pool_size=8) as api:
        await api.set_stock("LIVE", 100_000)
        results: list[dict[str, object]] = []

        async def sell(wave: int) -> None:
            answers = await asyncio.gather(
                *(api.reserve(f"w{wave}-{n}", {"LIVE": 1}) for n in range(BUYERS_PER_WAVE))
            )
            for n, answer in enumerate(answers):
                held = answer.json()["id"]
                action = "confirm" if n % 2 else "release"
                await api.client.post(f"/v1/reservations/{held}/{action}")

        async def audit() -> None:
            for _ in range(WAVES):
                answer = await api.client.post("/v1/audit", headers=api.admin)
                assert answer.status_code == 200, answer.text
                results.append(answer.json())

        await asyncio.gather(audit(), *(sell(wave) for wave in range(WAVES)))

    assert len(results) == WAVES
    assert [r["violations"] for r in results if not r["ok"]] == []
