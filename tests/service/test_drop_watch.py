"""The drop view's figures and its bound on per-SKU series, in process (fast).

The page in Chromium against ``serve --workers 2`` is tests/admin/test_drop_view.py; here
the JSON it polls: only watched SKUs are counted (a SKU nobody watches adds no series to
``/metrics``), the totals are the answers given, a session is needed, an unknown SKU
takes no place, and one run counts at most ``watch.SKUS_MAX`` SKUs. The list workers
share is real files in a real directory, read by two watchers as two workers would.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from stockguard.engine import Engine
from stockguard.service import watch
from stockguard.service.watch import SkuWatch, WatchFull

from .support import ADMIN_TOKEN, Api, AppFactory

SQLITE = pytest.mark.parametrize("backend", ["sqlite"])


def unique(prefix: str) -> str:
    """Metrics are this process's for good: each test counts SKUs no other test names."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def signed_in(api: Api) -> None:
    answer = await api.client.post("/admin/sign-in", data={"token": ADMIN_TOKEN})
    assert answer.status_code == 303, answer.text


async def figures(api: Api, sku: str, status: int = 200) -> dict[str, Any]:
    answer = await api.client.get("/admin/api/drop", params={"sku": sku})
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    return body


@SQLITE
async def test_only_a_watched_sku_is_counted_and_its_totals_are_the_answers(
    make_api: AppFactory,
) -> None:
    watched, other = unique("HOT"), unique("COLD")
    async with make_api() as api:
        await signed_in(api)
        await api.set_stock(watched, 3)
        await api.set_stock(other, 3)
        before = await figures(api, watched)
        assert (before["held"], before["refused"], before["counting"]) == (0, 0, 1)
        assert before["stock"]["available"] == 3

        statuses = [(await api.reserve(f"o-{n}", {watched: 1})).status_code for n in range(4)]
        assert statuses == [201, 201, 201, 409]
        assert (await api.reserve("o-0", {watched: 1})).status_code == 200  # a replay
        assert (await api.reserve("both", {watched: 1, other: 1})).status_code == 409
        assert (await api.reserve("cold", {other: 1})).status_code == 201

        after = await figures(api, watched)
        assert after["outcomes"] == {"held": 3, "replayed": 1, "out-of-stock": 2}
        assert (after["held"], after["replayed"], after["refused"]) == (3, 1, 2)
        assert after["stock"]["available"] == 0
        assert after["latency"]["counts"][-1] == 6
        assert len(after["latency"]["counts"]) == len(after["latency"]["le_s"]) + 1
        assert after["at_ms"] >= before["at_ms"]

        exported = (await api.client.get("/metrics")).text
        assert f'stockguard_sku_reservations_total{{outcome="held",sku="{watched}"}} 3.0' in (
            exported
        )
        assert other not in exported, "a SKU nobody watches must add no series"


@SQLITE
async def test_figures_need_a_session_and_an_unknown_sku_takes_no_place(
    make_api: AppFactory,
) -> None:
    async with make_api() as api:
        signed_out = await figures(api, "ANY", 401)
        assert signed_out["kind"] == "signed-out"
        await signed_in(api)
        missing = unique("NOPE")
        unknown = await figures(api, missing, 404)
        assert unknown["kind"] == "unknown-sku"
        invalid = await figures(api, "", 422)
        assert invalid["kind"] == "invalid-input"


@SQLITE
async def test_one_run_counts_at_most_skus_max_skus(make_api: AppFactory) -> None:
    skus = [unique(f"S{n}") for n in range(watch.SKUS_MAX + 1)]
    async with make_api() as api:
        await signed_in(api)
        for _ in range(3):  # SKUs that do not exist take no place
            assert (await figures(api, unique("NONE"), 404))["kind"] == "unknown-sku"
        for sku in skus:
            await api.set_stock(sku, 1)
        for sku in skus[:-1]:
            await figures(api, sku)
        full = await figures(api, skus[-1], 409)
        assert full["kind"] == "watch-full"
        assert str(watch.SKUS_MAX) in full["message"]
        assert (await figures(api, skus[0]))["ok"], "a SKU already counted can be watched"


async def test_workers_share_the_watched_skus_through_the_directory(tmp_path: Path) -> None:
    """Two watchers on one directory, as two workers of one serve: a SKU one of them is
    asked for is counted by the other after its next refresh, until the watch lapses; the
    cap holds over both."""
    now = [1_000.0]
    first, second = await Engine.open("memory://"), await Engine.open("memory://")
    try:
        one = SkuWatch(first, tmp_path, clock=lambda: now[0], ttl_s=30, skus_max=2)
        two = SkuWatch(second, tmp_path, clock=lambda: now[0], ttl_s=30, skus_max=2)
        one.watch("HOT")
        assert first.watched == {"HOT"}
        assert second.watched == frozenset()
        two.refresh()
        assert second.watched == {"HOT"}

        now[0] += 20
        two.watch("WARM")
        with pytest.raises(WatchFull):
            one.watch("THIRD")
        now[0] += 20
        one.watch("HOT")  # already counted: still allowed, and watched 30 s from now
        two.refresh()
        assert first.watched == second.watched == {"HOT", "WARM"}
        now[0] += 15
        one.refresh()
        two.refresh()
        assert first.watched == second.watched == {"HOT"}, "WARM lapsed 30 s after its ask"
        now[0] += 30
        one.refresh()
        two.refresh()
        assert first.watched == second.watched == frozenset()
    finally:
        await first.close()
        await second.close()


async def test_a_sku_code_any_text_makes_a_safe_file_name(tmp_path: Path) -> None:
    engine = await Engine.open("memory://")
    try:
        shared = SkuWatch(engine, tmp_path)
        odd = "../tee/size M/ü?*"
        shared.watch(odd)
        assert engine.watched == {odd}
        names = sorted(path.name for path in (tmp_path / watch.DIRECTORY_NAME).iterdir())
        assert names == [watch.LOCK_NAME, odd.encode().hex()]
        (tmp_path / watch.DIRECTORY_NAME / "stray.txt").touch()  # not one of ours
        shared.refresh()
        assert engine.watched == {odd}
    finally:
        await engine.close()


@SQLITE
async def test_the_page_names_its_sku_or_asks_for_one(make_api: AppFactory) -> None:
    sku = unique("PAGE")
    async with make_api() as api:
        await signed_in(api)
        await api.set_stock(sku, 5)
        asking = await api.client.get("/admin/drop")
        assert asking.status_code == 200
        assert "Name a SKU to watch" in asking.text
        watching = await api.client.get("/admin/drop", params={"sku": sku})
        assert watching.status_code == 200
        assert f'data-sku="{sku}"' in watching.text
        assert '<script src="/admin/static/drop.js" defer></script>' in watching.text
        missing = await api.client.get("/admin/drop", params={"sku": "NO-SUCH"})
        assert missing.status_code == 404
        assert "No SKU NO-SUCH exists." in missing.text
        script = await api.client.get("/admin/static/drop.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
