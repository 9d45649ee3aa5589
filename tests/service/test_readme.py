"""The README's library snippet runs as printed, twice, and prints what the README says
(including the refused stale admin form of docs/design.md#seed-001)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def test_the_library_snippet_runs_twice_and_prints_what_the_readme_shows(tmp_path: Path) -> None:
    text = README.read_text()
    snippet = re.search(r"## Use it as a library\n.*?```python\n(.*?)```", text, re.S)
    shown = re.search(r"It prints .*?\n\n```\n(.*?)```", text, re.S)
    assert snippet is not None and shown is not None
    script = tmp_path / "snippet.py"
    script.write_text(snippet.group(1))
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == shown.group(1)
