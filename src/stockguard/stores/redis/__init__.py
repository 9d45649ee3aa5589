"""Redis as the hot path: stock counters and holds in Lua, the SQL store written behind.

``keys`` names every key; the ``*.lua`` scripts are the only writers of stock in Redis
(each validates before its first write and appends its event to a stream in the same
atomic step); ``persister`` copies the stream into SQL; ``reconcile`` loads, compares and
repairs. The layout is documented in ``docs/durability.md``.
"""
