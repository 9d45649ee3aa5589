"""Proof under faults (issue 18): histories of real HTTP operations, and their checker.

``history`` records each operation a client made against ``stockguard serve`` with its
invoke and complete times (monotonic), its request, its response and an outcome in
Jepsen's three values: ``ok`` (the service answered success), ``fail`` (it answered a
definite refusal: nothing was done) and ``info`` (indeterminate: a timeout, a lost
connection or a 5xx, after which the operation may or may not have taken effect).

``checker`` reads a history and the final state read back through the HTTP API and says
whether they are consistent: every acknowledged write present, stock conserved per SKU,
holds within the bounds the history allows, each reservation ended at most once, replays
answering the original, and no confirm succeeding after its hold's expiry by the
database's clock. ``load`` drives a mixed load that records such a history; ``faults``
and ``proxy`` inject the faults of docs/reliability.md.
"""
