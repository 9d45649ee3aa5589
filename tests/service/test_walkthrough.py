"""docs/http-walkthrough.md is run as printed: every ``$`` command of it, in order, in one
shell, against a fresh ``stockguard serve`` on the embedded default (SQLite, coalescing),
and each answer must be the one pasted under the command, once ids, times and the
home directory are masked. A change of the API's answers that the walk-through does not
show fails here rather than misleading its first reader.

``python tests/service/test_walkthrough.py`` re-runs it and writes the new answers into
the file (then read the diff before committing it).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the tests' support module is a sibling
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from service.support import run_serve  # type: ignore[import-not-found,no-redef]
else:
    from .support import run_serve

WALKTHROUGH = Path(__file__).resolve().parents[2] / "docs" / "http-walkthrough.md"
HOME_SHOWN = "/home/you/.local/state"
"""Where the page says serve keeps its state (its ``XDG_STATE_HOME`` here)."""
MARK = "@@stockguard-walkthrough-end@@"
COMMANDS_S_MAX = 300

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@dataclass
class Command:
    line: int
    """Index in the file's lines of the command's first line."""
    text: str
    output_lines: tuple[int, int]
    """[start, end) of the answer pasted under it."""


def commands(lines: list[str]) -> Iterator[Command]:
    """Every ``$`` command of the page's ``text`` blocks, with its continuation lines
    (ending in ``\\``) and the answer lines that follow up to the next command."""
    in_block = False
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            in_block = line == "```text" and not in_block
            index += 1
            continue
        if not (in_block and line.startswith("$ ")):
            index += 1
            continue
        start = index
        text = [line[2:]]
        while text[-1].endswith("\\"):
            index += 1
            text.append(lines[index])
        index += 1
        first = index
        while not lines[index].startswith(("$ ", "```")):
            index += 1
        end = index
        while end > first and lines[end - 1] == "":
            end -= 1  # a blank line between two commands is layout, not output
        yield Command(start, "\n".join(text), (first, end))


def run_walkthrough(tmp_path: Path) -> tuple[list[str], list[str]]:
    """(the page's lines, the same page with each answer as this run printed it)."""
    lines = WALKTHROUGH.read_text().split("\n")
    found = list(commands(lines))
    with run_serve(tmp_path) as served:
        script = []
        for command in found:
            text = command.text
            if text.startswith("SG="):
                text = f"SG={served.url}"
            script.append(f"{text}\necho; echo '{MARK}'")
        # The ``stockguard`` the page calls is the one installed with these tests.
        path = f"{Path(sys.executable).parent}:{served.env.get('PATH', '')}"
        answer = subprocess.run(
            ["bash", "-c", "\n".join(script)],
            cwd=tmp_path,
            env={**served.env, "PATH": path},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=COMMANDS_S_MAX,
            check=False,
        )
    state_home = served.env["XDG_STATE_HOME"]
    outputs = answer.stdout.replace(state_home, HOME_SHOWN).split(MARK + "\n")
    assert len(outputs) >= len(found), answer.stdout
    rewritten = list(lines)
    for command, output in reversed(list(zip(found, outputs, strict=False))):
        printed = output.rstrip("\n").split("\n") if output.strip() else []
        start, end = command.output_lines
        rewritten[start:end] = printed
    return lines, rewritten


def masked(lines: list[str]) -> list[str]:
    return [_TIME.sub("<time>", _UUID.sub("<uuid>", line)) for line in lines]


def test_every_command_of_the_walkthrough_answers_as_printed(tmp_path: Path) -> None:
    page, ran = run_walkthrough(tmp_path)
    assert masked(ran) == masked(page)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        _, ran = run_walkthrough(Path(directory))
    WALKTHROUGH.write_text("\n".join(ran))
    print(f"rewrote {WALKTHROUGH}; read `git diff` before committing it")
