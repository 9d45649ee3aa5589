"""``stockguard bench``: every strategy on the same workload, on the user's own database.

In-process (no HTTP): ``workloads`` drives an Engine, ``runner`` gives each run a fresh
database and audits it afterwards, ``report`` prints tables and writes plots, and
``command`` is the CLI command. Targets are ratios within one run (docs/design.md#targets).
"""
