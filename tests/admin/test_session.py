"""The admin session cookie and CSRF token, as pure functions (no server, no browser)."""

from __future__ import annotations

from stockguard.admin.session import (
    FLASH_TTL_S,
    SESSION_TTL_S,
    Flash,
    Session,
    Signer,
    csrf_matches,
)

NOW_S = 1_750_000_000


def test_a_session_cookie_reads_back_until_it_expires() -> None:
    signer = Signer("token-a")
    session, cookie = signer.new_session(NOW_S)
    assert signer.read_session(cookie, NOW_S + 1) == session
    assert session.expires_at_s == NOW_S + SESSION_TTL_S
    assert signer.read_session(cookie, NOW_S + SESSION_TTL_S - 1) == session
    assert signer.read_session(cookie, NOW_S + SESSION_TTL_S) is None


def test_each_session_gets_its_own_csrf_token() -> None:
    signer = Signer("token-a")
    first, _ = signer.new_session(NOW_S)
    second, _ = signer.new_session(NOW_S)
    assert first.csrf_token != second.csrf_token
    assert len(first.csrf_token) >= 40


def test_a_cookie_signed_under_another_admin_token_is_refused() -> None:
    """Rotating the admin token signs every session out."""
    _, cookie = Signer("old-token").new_session(NOW_S)
    assert Signer("new-token").read_session(cookie, NOW_S) is None


def test_a_cookie_changed_anywhere_is_refused() -> None:
    signer = Signer("token-a")
    _, cookie = signer.new_session(NOW_S)
    expires, csrf, signature = cookie.split(".")
    for forged in (
        f"{int(expires) + 1}.{csrf}.{signature}",
        f"{expires}.{csrf[:-1]}x.{signature}",
        f"{expires}.{csrf}.{signature[:-1]}",
        f"{expires}.{csrf}",
        "",
        "." * 2_000,
        None,
    ):
        assert signer.read_session(forged, NOW_S) is None, forged


def test_a_flash_message_cannot_pass_for_a_session_or_the_reverse() -> None:
    """Each signature covers its purpose: one kind of cookie never verifies as another."""
    signer = Signer("token-a")
    flash = signer.seal_flash(Flash("ok", "Saved."), NOW_S)
    assert signer.open_flash(flash, NOW_S) == Flash("ok", "Saved.")
    assert signer.open_flash(flash, NOW_S + FLASH_TTL_S) is None
    assert signer.read_session(flash, NOW_S) is None
    _, cookie = signer.new_session(NOW_S)
    assert signer.open_flash(cookie, NOW_S) is None


def test_only_the_admin_token_itself_matches() -> None:
    signer = Signer("s3cret-token")
    assert signer.token_matches("s3cret-token")
    for wrong in ("", "s3cret-token ", "S3CRET-TOKEN", "s3cret", "s3cret-token" * 50, "é\udcff"):
        assert not signer.token_matches(wrong), wrong


def test_csrf_tokens_must_match_exactly() -> None:
    session = Session("abc-DEF_123", NOW_S + 10)
    assert csrf_matches(session, "abc-DEF_123")
    for wrong in (None, "", "abc-DEF_12", "abc-def_123", "abc-DEF_123 ", "ä"):
        assert not csrf_matches(session, wrong), wrong
