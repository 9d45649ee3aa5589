"""``stockguard loadtest``: drive a running service over HTTP the way a shop's buyers do.

The scenarios are the acceptance tests of ``docs/design.md#seed-003`` (``drop``),
``docs/design.md#seed-004`` (``peak``) and ``docs/design.md#seed-002`` (``flash``), plus a
``shop`` mix; after each run the service's own API is audited. Modules:

- ``plan``: the scenario's parameters, k6-style stages and thresholds;
- ``http1``: the client, a raw asyncio HTTP/1.1 keep-alive connection (and an httpx one
  to compare it with);
- ``worker``: one load process, its virtual users and what it records;
- ``run``: the processes, the live line, the service started and stopped;
- ``audit``: the correctness checks from the API; ``summary`` and ``report``: the output.
"""
