"""The checker's own tests: a good history passes, and each hand-made bad history is
flagged by the check that names its fault (and only the expected checks)."""

from __future__ import annotations

from pathlib import Path

from stockguard.verify.checker import check
from stockguard.verify.history import History, Kind, Outcome

from .builders import T0_MS, Story, at


def a_good_story() -> Story:
    story = Story()
    story.stock("A", 10)
    story.stock("B", 5)
    story.hold("r1", "o1", {"A": 2})
    story.hold("r2", "o2", {"A": 1, "B": 2})
    story.hold("r3", "o3", {"B": 1})
    story.end("r1", Kind.CONFIRM, 200)
    story.end("r2", Kind.RELEASE, 200)
    story.hold("r1", "o1", {"A": 2}, status=200)  # a replay, after the confirm
    story.hold("-", "o4", {"A": 99}, status=409, stored=False)  # refused
    return story


def test_a_consistent_history_is_valid() -> None:
    story = a_good_story()
    report = check(story.history, story.final())
    assert report.valid, report.anomalies
    assert report.counts == {"ok": 6, "fail": 1, "info": 0, "total": 7}
    assert report.acknowledged_lost == 0 and report.oversold_units == 0


def test_an_indeterminate_hold_may_or_may_not_have_happened() -> None:
    happened = a_good_story()
    happened.hold("r5", "o5", {"A": 1}, status=None)  # timed out, but committed
    not_happened = a_good_story()
    not_happened.hold("r5", "o5", {"A": 1}, status=None, stored=False)

    for story in (happened, not_happened):
        report = check(story.history, story.final())
        assert report.valid, report.anomalies
        assert report.counts["info"] == 1


def test_an_indeterminate_confirm_may_or_may_not_have_happened() -> None:
    happened = a_good_story()
    happened.end("r3", Kind.CONFIRM, None, final="confirmed")
    not_happened = a_good_story()
    not_happened.end("r3", Kind.CONFIRM, None)

    for story in (happened, not_happened):
        assert check(story.history, story.final()).valid


def test_an_acknowledged_hold_missing_at_the_end_is_lost() -> None:
    story = a_good_story()
    del story.reservations["r3"]
    report = check(story.history, story.final())
    assert report.by_check() == {"lost": 1, "bounds": 1}  # held below the acknowledged
    assert report.acknowledged_lost == 1


def test_an_acknowledged_confirm_not_in_the_final_state_is_lost() -> None:
    story = a_good_story()
    story.end("r3", Kind.CONFIRM, 200, final="held")  # answered confirmed, still held
    report = check(story.history, story.final())
    assert "lost" in report.by_check()
    assert report.acknowledged_lost == 1


def test_a_refused_hold_that_took_effect_is_a_phantom() -> None:
    story = a_good_story()
    story.hold("r9", "o9", {"B": 1}, status=409)  # answered out-of-stock, yet stored
    assert check(story.history, story.final()).by_check() == {"phantom": 1}


def test_reserved_that_does_not_match_the_held_reservations_fails_the_bank() -> None:
    story = a_good_story()
    final = story.final()
    final.stock["B"]["reserved"] += 1  # one unit held by no reservation (I2 broken)
    final.stock["B"]["available"] -= 1
    assert "bank" in check(story.history, final).by_check()


def test_units_held_beyond_what_was_received_are_oversold() -> None:
    story = Story()
    story.stock("HOT", 1)
    story.hold("r1", "o1", {"HOT": 1})
    story.hold("r2", "o2", {"HOT": 1})  # the last unit granted twice
    report = check(story.history, story.final())
    assert "bank" in report.by_check()
    assert report.oversold_units == 1


def test_a_sale_without_its_ledger_entry_fails_the_bank() -> None:
    story = a_good_story()
    story.movements["A"] = [m for m in story.movements["A"] if m["reason"] != "sale"]
    assert "bank" in check(story.history, story.final()).by_check()


def test_held_units_above_every_hold_attempted_are_out_of_bounds() -> None:
    story = a_good_story()
    final = story.final()
    final.reservations["rx"] = dict(
        final.reservations["r3"], id="rx", order_id="ox", items=[{"sku": "B", "quantity": 3}]
    )
    final.stock["B"]["reserved"] += 3  # 4 held, 3 ever asked for (o2's 2 and o3's 1)
    final.stock["B"]["available"] -= 3
    report = check(story.history, final)
    assert {"phantom", "bounds"} <= set(report.by_check())


def test_a_hold_seen_confirmed_then_released_ended_twice() -> None:
    story = a_good_story()
    story.end("r3", Kind.CONFIRM, 200)
    story.end("r3", Kind.RELEASE, 200, final="confirmed")  # release answered released
    assert "ended-once" in check(story.history, story.final()).by_check()


def test_a_hold_seen_held_after_it_ended_ended_twice() -> None:
    story = a_good_story()
    story.end("r3", Kind.RELEASE, 200)
    read = story.op(
        Kind.READ, {"reservation_id": "r3"}, 200, dict(story.reservations["r3"], status="held")
    )
    assert read.outcome is Outcome.OK
    assert check(story.history, story.final()).by_check() == {"ended-once": 1}


def test_a_replay_that_created_a_second_hold_is_flagged() -> None:
    story = a_good_story()
    story.hold("r3b", "o3", {"B": 1}, status=201)  # same order, a new hold
    report = check(story.history, story.final())
    assert {"replay", "phantom"} <= set(report.by_check())


def test_a_replay_answering_other_items_is_flagged() -> None:
    story = a_good_story()
    story.op(
        Kind.HOLD,
        {"order_id": "o3", "items": [{"sku": "B", "quantity": 1}]},
        200,
        dict(story.reservations["r3"], items=[{"sku": "B", "quantity": 2}]),
    )
    assert "replay" in check(story.history, story.final()).by_check()


def test_a_confirm_after_expiry_is_flagged() -> None:
    story = a_good_story()
    story.hold("r7", "o7", {"A": 1}, ttl_s=1)
    story.end("r7", Kind.CONFIRM, 200, sold_at_ms=T0_MS + 1_000)  # exactly at expires_at
    assert check(story.history, story.final()).by_check() == {"late-confirm": 1}


def test_an_expiry_long_before_expires_at_is_flagged() -> None:
    story = a_good_story()
    story.reservations["r3"]["status"] = "expired"  # due in 600 s, read 5 s in
    assert "early-expiry" in check(story.history, story.final()).by_check()


def test_an_internal_error_is_flagged() -> None:
    story = a_good_story()
    op = story.op(Kind.CONFIRM, {"reservation_id": "r3"}, 500, {"type": "internal-error"})
    assert op.outcome is Outcome.INFO  # it may have happened
    assert check(story.history, story.final()).by_check() == {"internal": 1}


def test_the_services_own_audit_violations_are_reported() -> None:
    story = a_good_story()
    story.audit = {"ok": False, "violations": ["I2 A: reserved 3, held 2"], "oversold_units": 0}
    assert check(story.history, story.final()).by_check() == {"audit": 1}


def test_a_refused_adjustment_that_left_a_movement_is_a_phantom() -> None:
    story = a_good_story()
    story.op(Kind.ADJUST, {"sku": "A", "delta": 3, "reason": "adj-1"}, 409, {})
    story.movements["A"].append(
        {
            "at": at(T0_MS),
            "delta": 3,
            "on_hand_after": 11,
            "reason": "adj-1",
            "reservation_id": None,
        }
    )
    story.received["A"] += 3
    assert check(story.history, story.final()).by_check() == {"phantom": 1}


def test_an_acknowledged_adjustment_missing_from_the_ledger_is_lost() -> None:
    story = a_good_story()
    story.op(Kind.ADJUST, {"sku": "A", "delta": 3, "reason": "adj-2"}, 200, {})
    report = check(story.history, story.final())
    assert report.by_check() == {"lost": 1} and report.acknowledged_lost == 1


def test_a_history_survives_a_save_and_a_load(tmp_path: Path) -> None:
    story = a_good_story()
    story.hold("r5", "o5", {"A": 1}, status=None)
    story.history.meta = {"fault": "none"}
    story.history.save(tmp_path / "history.jsonl")

    loaded = History.load(tmp_path / "history.jsonl")
    assert loaded.meta == {"fault": "none"}
    assert [op.to_json() for op in loaded] == [op.to_json() for op in story.history]
    assert check(loaded, story.final()).valid
