"""The Lua scripts, loaded once per Redis (SCRIPT LOAD) and called by hash (EVALSHA).

Each ``*.lua`` file is one operation; ``_lib.lua`` is prepended to every one of them
(Redis scripts cannot import). When Redis forgot a script (restart, SCRIPT FLUSH) the
call answers NOSCRIPT and the script is loaded again, once, before the retry.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis

NAMES = (
    "reserve",
    "confirm",
    "release",
    "extend",
    "release_part",
    "expire",
    "set_on_hand",
    "set_location",
    "adjust",
    "policy",
    "create_product",
    "levels",
    "reservation",
    "snapshot",
    "lease",
    "delete_if",
    "enqueue",
    "turn",
)


def _read(name: str) -> str:
    return (resources.files("stockguard.stores.redis") / f"{name}.lua").read_text("utf-8")


class Script:
    def __init__(self, name: str) -> None:
        self.name = name
        self.source = _read("_lib") + "\n" + _read(name)
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()

    async def load(self, client: Redis) -> None:
        loaded = await client.script_load(self.source)
        assert loaded == self.sha, f"redis hashed {self.name}.lua differently"

    async def __call__(self, client: Redis, keys: list[str], args: list[str]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            await self.load(client)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


@cache
def script(name: str) -> Script:
    assert name in NAMES, f"no script {name!r}"
    return Script(name)


async def load_all(client: Redis) -> None:
    """SCRIPT LOAD every script (at start; later calls reload on NOSCRIPT by themselves)."""
    for name in NAMES:
        await script(name).load(client)
