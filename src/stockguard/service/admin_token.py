"""The admin token ``serve`` generates when none is configured, kept across restarts.

It lives in one file, ``admin-token`` in the data directory (``Settings.data_dir``;
unset: ``$STATE_DIRECTORY`` as systemd's ``StateDirectory=`` sets it, else
``$XDG_STATE_HOME/stockguard``, else ``~/.local/state/stockguard``), made with mode 0600
in a 0700 directory. ``serve`` prints the file's path, never the token, so the token stays
out of logs and journals; ``stockguard admin-token`` shows it, ``--rotate`` replaces it
(running servers keep the old one until they restart). A file others can read is
refused, as ssh refuses a readable key.

A token configured by ``STOCKGUARD_ADMIN_TOKEN`` or the config file wins and nothing
is stored. Several hosts behind one balancer must share a configured token: each host's
generated one differs, and the admin cookie is tied to the token (admin/session.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from stockguard.service.startup import EXIT_DATA_DIR, StartupFailure

TOKEN_FILE = "admin-token"  # noqa: S105 (a file name)
TOKEN_BYTES = 32


def default_data_dir() -> Path:
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / "stockguard"


def token_path(data_dir: Path | None) -> Path:
    return (data_dir or default_data_dir()) / TOKEN_FILE


def _unwritable(path: Path, error: OSError) -> StartupFailure:
    return StartupFailure(
        EXIT_DATA_DIR,
        f"cannot keep the admin token in {path}: {error.strerror or error}",
        "pass --data-dir / set STOCKGUARD_DATA_DIR to a directory this user may write, "
        "or set STOCKGUARD_ADMIN_TOKEN",
    )


def _write(path: Path, token: str, *, replace: bool) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = path.with_name(f".{path.name}.{os.getpid()}") if replace else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    if replace:
        os.replace(target, path)


def _read(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StartupFailure(
            EXIT_DATA_DIR,
            f"the admin token file {path} may be read by other users (mode {stat.S_IMODE(mode):o})",
            f"chmod 600 {path}, then `stockguard admin-token --rotate` if others saw it",
        )
    token = path.read_text().strip()
    if not token:
        raise StartupFailure(
            EXIT_DATA_DIR,
            f"the admin token file {path} is empty",
            "run `stockguard admin-token --rotate` to write a new one",
        )
    return token


def load_or_create(data_dir: Path | None) -> tuple[str, Path, bool]:
    """The stored token, its file, and whether it was made now. Two processes starting
    at once agree: the file is created exclusively, the loser reads the winner's."""
    path = token_path(data_dir)
    try:
        try:
            _write(path, secrets.token_urlsafe(TOKEN_BYTES), replace=False)
        except FileExistsError:
            return _read(path), path, False
        return _read(path), path, True
    except OSError as error:
        raise _unwritable(path, error) from None


def rotate(data_dir: Path | None) -> tuple[str, Path]:
    """Replaces the stored token (atomically: a reader sees the old or the new one)."""
    path = token_path(data_dir)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        _write(path, token, replace=True)
    except OSError as error:
        with contextlib.suppress(OSError):
            path.with_name(f".{path.name}.{os.getpid()}").unlink()
        raise _unwritable(path, error) from None
    return token, path
