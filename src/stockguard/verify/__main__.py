"""``python -m stockguard.verify faults …`` and ``… check DIR`` (see verify/command.py)."""

from stockguard.verify.command import app

app()
