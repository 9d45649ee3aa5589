"""docs/events.md says what the code does: the verifier it shows is the one the tests run,
and real events of a sale fit the JSON Schemas it gives (required fields present, no field
it does not name, the envelope's members exactly)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from stockguard.domain.events import EventType
from stockguard.engine import Engine

from .test_webhooks import committed

DOC = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
VERIFIER = (Path(__file__).parent / "verifier.py").read_text()


def schema_after(heading: str) -> dict[str, Any]:
    section = DOC[DOC.index(heading) :]
    block = re.search(r"```json\n(.*?)```", section, re.S)
    assert block is not None, heading
    value: dict[str, Any] = json.loads(block.group(1))
    return value


def test_the_documented_verifier_is_the_one_the_tests_run() -> None:
    code = re.search(r"```python\n(.*?)```", DOC, re.S)
    assert code is not None
    assert code.group(1) in VERIFIER


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_real_events_fit_the_documented_schemas(db_url: str) -> None:
    engine = await Engine.open(db_url, "conditional", migrate=False)
    try:
        await engine.set_on_hand("S", 3)
        await engine.set_low_stock_threshold("S", 2)
        one = await engine.reserve("o-1", [("S", 2)], customer_id="c-1")
        two = await engine.reserve("o-2", [("S", 1)])
        await engine.confirm(one.reservation.id)
        await engine.release(two.reservation.id)
        await engine.adjust("S", 5, "restock")
        await engine.sequence_events()
        events = await committed(engine)
    finally:
        await engine.close()
    envelope = schema_after("JSON Schema (draft 2020-12) of the envelope")
    seen = set()
    for event in events:
        body = event.envelope()
        assert set(body) == set(envelope["properties"]) == set(envelope["required"])
        assert body["type"] in envelope["properties"]["type"]["enum"]
        data_schema = schema_after(f"### `{body['type']}`")
        assert set(data_schema["required"]) <= set(body["data"]), body
        assert set(body["data"]) <= set(data_schema["properties"]), body
        seen.add(body["type"])
    assert seen >= {t.value for t in EventType} - {"reservation.expired"}
