"""The engine reads behind the admin overview, on every backend: products and loose SKUs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stockguard.engine import Engine

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[Engine]:
    async with await Engine.open(db_url, "conditional", migrate=False, pool_size=2) as opened:
        yield opened


async def _catalogue(engine: Engine) -> None:
    await engine.create_product(
        "Festival Tee", {"size": ["S", "M"], "colour": ["red", "blue"]}, initial_on_hand=5
    )
    await engine.create_product("Tote 100%_bag", initial_on_hand=3, sku_prefix="TOTE")
    await engine.create_product("Enamel mug", initial_on_hand=9)
    await engine.set_on_hand("LOOSE-A-RED", 4)
    await engine.set_on_hand("LOOSE_B", 1)


async def test_products_come_by_name_with_every_variant_and_live_stock(engine: Engine) -> None:
    await _catalogue(engine)
    await engine.reserve("order-1", [("FESTIVAL-TEE-M-RED", 2)])
    products = await engine.list_products()
    assert [p.name for p in products] == ["Enamel mug", "Festival Tee", "Tote 100%_bag"]
    tee = products[1]
    assert [v.sku for v in tee.variants] == [
        "FESTIVAL-TEE-S-RED",
        "FESTIVAL-TEE-S-BLUE",
        "FESTIVAL-TEE-M-RED",
        "FESTIVAL-TEE-M-BLUE",
    ]
    assert dict(tee.variants[2].options) == {"size": "M", "colour": "red"}
    assert (tee.variants[2].stock.on_hand, tee.variants[2].stock.reserved) == (5, 2)
    assert tee.options == {"size": ("S", "M"), "colour": ("red", "blue")}


async def test_product_search_matches_names_and_skus_in_any_case(engine: Engine) -> None:
    await _catalogue(engine)

    async def names(search: str) -> list[str]:
        return [p.name for p in await engine.list_products(search=search)]

    assert await names("tee") == ["Festival Tee"]
    assert await names("M-BLUE") == ["Festival Tee"]
    assert await names("MUG") == ["Enamel mug"]
    assert await names("100%_") == ["Tote 100%_bag"], "LIKE wildcards are matched literally"
    assert await names("%") == ["Tote 100%_bag"]
    assert await names("nothing") == []
    assert len(await engine.list_products(limit=2)) == 2


async def test_standalone_stock_lists_only_skus_without_a_product(engine: Engine) -> None:
    await _catalogue(engine)
    assert [level.sku for level in await engine.list_standalone_stock()] == [
        "LOOSE-A-RED",
        "LOOSE_B",
    ]
    assert [level.sku for level in await engine.list_standalone_stock(search="red")] == [
        "LOOSE-A-RED"
    ]
    assert [level.sku for level in await engine.list_standalone_stock(search="_")] == ["LOOSE_B"]
