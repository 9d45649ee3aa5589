"""The store bounds what it sends to the database, whoever calls it (library, admin page).

A page cursor is a row number the store handed out: ASCII digits up to what a signed
64-bit column holds. Text filters with control characters match nothing the domain lets
in and PostgreSQL refuses NUL in text, so they are refused before any statement.
"""

from __future__ import annotations

import pytest

from stockguard import domain
from stockguard.engine import Engine

pytestmark = pytest.mark.asyncio

BAD_CURSORS = (
    "9223372036854775808",  # 2**63
    "9999999999999999999",
    "1" + "0" * 40,
    "²",
    "٣",
    "-1",
    "+1",
    " 1",
    "",
    "\x00",
)


@pytest.mark.parametrize("cursor", BAD_CURSORS)
async def test_cursors_the_store_did_not_hand_out_are_invalid_input(
    db_url: str, cursor: str
) -> None:
    async with await Engine.open(db_url, "conditional", migrate=False) as engine:
        await engine.set_on_hand("A", 1)
        with pytest.raises(domain.InvalidInput) as refused:
            await engine.list_reservations(cursor=cursor)
        assert refused.value.field == "cursor"
        with pytest.raises(domain.InvalidInput) as refused:
            await engine.movements("A", cursor=cursor)
        assert refused.value.field == "cursor"


async def test_the_largest_cursor_a_bigint_holds_is_answered(db_url: str) -> None:
    async with await Engine.open(db_url, "conditional", migrate=False) as engine:
        await engine.set_on_hand("A", 1)
        largest = str(2**63 - 1)
        assert (await engine.list_reservations(cursor=largest))[0] == []
        movements, _ = await engine.movements("A", cursor=largest)
        assert [m.reason for m in movements] == ["created"]


@pytest.mark.parametrize("text", ["\x00", "a\x00b", "o\n", "\x7f"])
async def test_text_filters_with_control_characters_are_invalid_input(
    db_url: str, text: str
) -> None:
    async with await Engine.open(db_url, "conditional", migrate=False) as engine:
        for call in (
            lambda: engine.list_reservations(order_id=text),
            lambda: engine.list_reservations(customer_id=text),
            lambda: engine.list_reservations(sku=text),
            lambda: engine.list_products(search=text),
            lambda: engine.list_standalone_stock(search=text),
        ):
            with pytest.raises(domain.InvalidInput):
                await call()
