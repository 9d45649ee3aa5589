"""The pure rules, without any store: unit examples and Hypothesis properties."""

from __future__ import annotations

import tracemalloc
from typing import Never

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockguard import domain
from stockguard.domain import Line, Reservation, ReserveRequest, Status, StockLevel


def level(sku: str, on_hand: int, reserved: int = 0) -> StockLevel:
    return StockLevel(sku, on_hand, reserved, 0)


def request(order_id: str, *lines: tuple[str, int]) -> ReserveRequest:
    return domain.validate_reserve(order_id, list(lines), 60)


def held(expires_at_ms: int = 10_000, status: Status = Status.HELD) -> Reservation:
    return Reservation("r1", "o1", None, status, (Line("A", 1),), expires_at_ms, 0)


class TestValidation:
    def test_lines_come_back_sorted_by_sku_the_lock_order(self) -> None:
        checked = request("o", ("b", 1), ("a", 2), ("c", 3))
        assert checked.skus == ("a", "b", "c")

    def test_a_sku_twice_in_one_request_is_refused(self) -> None:
        with pytest.raises(domain.InvalidInput, match="more than once"):
            request("o", ("a", 1), ("a", 2))

    def test_true_is_not_a_quantity(self) -> None:
        with pytest.raises(domain.InvalidInput):
            domain.validate_reserve("o", [("a", True)], 60)

    @pytest.mark.parametrize("sku", ["", "x" * 65, "a\x00b", "tab\there", "del\x7f"])
    def test_bad_sku_codes_are_refused(self, sku: str) -> None:
        with pytest.raises(domain.InvalidInput):
            domain.validate_sku(sku)

    def test_sixty_four_characters_and_unicode_are_a_valid_sku(self) -> None:
        assert domain.validate_sku("ü" * 64) == "ü" * 64


class TestHold:
    def test_hold_is_all_or_nothing_and_names_every_short_line(self) -> None:
        levels = {"a": level("a", 5), "b": level("b", 1), "c": level("c", 0)}
        with pytest.raises(domain.OutOfStock) as refused:
            domain.hold(levels, [Line("a", 2), Line("b", 2), Line("c", 1)])
        assert refused.value.shortfalls == (
            domain.Shortfall("b", 2, 1),
            domain.Shortfall("c", 1, 0),
        )

    def test_hold_of_an_unknown_sku_names_it(self) -> None:
        with pytest.raises(domain.UnknownSku) as unknown:
            domain.hold({"a": level("a", 5)}, [Line("a", 1), Line("zz", 1)])
        assert unknown.value.skus == ("zz",)

    def test_first_come_first_served_lets_a_smaller_later_request_through(self) -> None:
        levels = {"a": level("a", 3)}
        after, decisions = domain.decide_in_order(
            levels, [request("1", ("a", 2)), request("2", ("a", 2)), request("3", ("a", 1))]
        )
        assert [d.held for d in decisions] == [True, False, True]
        assert after["a"].reserved == 3


class TestTransitions:
    def test_confirm_after_expiry_is_refused(self) -> None:
        with pytest.raises(domain.ReservationExpired):
            domain.check_transition(held(expires_at_ms=100), Status.CONFIRMED, now_ms=100)

    def test_confirm_and_release_are_replay_safe(self) -> None:
        assert not domain.check_transition(held(status=Status.CONFIRMED), Status.CONFIRMED, 0)
        assert not domain.check_transition(held(status=Status.RELEASED), Status.RELEASED, 0)

    def test_releasing_an_expired_hold_is_already_done(self) -> None:
        assert not domain.check_transition(held(status=Status.EXPIRED), Status.RELEASED, 0)

    @pytest.mark.parametrize(
        ("status", "target", "error"),
        [
            (Status.CONFIRMED, Status.RELEASED, domain.InvalidState),
            (Status.RELEASED, Status.CONFIRMED, domain.InvalidState),
            (Status.EXPIRED, Status.CONFIRMED, domain.ReservationExpired),
        ],
    )
    def test_terminal_states_never_change(
        self, status: Status, target: Status, error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            domain.check_transition(held(status=status), target, 0)


class TestOnHandChange:
    def test_seed_001_save_over_a_sale_is_a_stock_change(self) -> None:
        with pytest.raises(domain.StockChanged) as changed:
            domain.check_on_hand_change(level("a", 11), 12, expected_on_hand=12)
        assert changed.value.current.on_hand == 11

    def test_on_hand_below_reserved_is_refused(self) -> None:
        with pytest.raises(domain.BelowReserved):
            domain.check_on_hand_change(level("a", 10, reserved=6), 5, None)


class TestProducts:
    def test_options_make_the_cartesian_product_of_variants(self) -> None:
        spec = domain.plan_product(
            "Tee Shirt", {"size": ["S", "M"], "colour": ["red", "navy blue"]}
        )
        assert [v.sku for v in spec.variants] == [
            "TEE-SHIRT-S-RED",
            "TEE-SHIRT-S-NAVY-BLUE",
            "TEE-SHIRT-M-RED",
            "TEE-SHIRT-M-NAVY-BLUE",
        ]

    def test_no_options_is_one_variant_without_option_values(self) -> None:
        spec = domain.plan_product("Poster", initial_on_hand=3)
        assert [(v.sku, dict(v.options), v.on_hand) for v in spec.variants] == [("POSTER", {}, 3)]

    def test_explicit_variants_must_use_listed_values(self) -> None:
        with pytest.raises(domain.InvalidInput):
            domain.plan_product(
                "Cap",
                {"colour": ["black"]},
                [domain.VariantSpec("CAP-W", {"colour": "white"}, 1)],
            )

    def test_too_many_combinations_are_refused(self) -> None:
        with pytest.raises(domain.InvalidInput):
            domain.plan_product(
                "Big", {"a": [str(i) for i in range(40)], "b": [str(i) for i in range(40)]}
            )

    def test_too_many_combinations_are_refused_before_any_is_built(self) -> None:
        """160,000 combinations: refused from the axis sizes, with (almost) no memory used;
        building them first took megabytes here and, at 8 axes x 100 values, all there is."""
        options = {f"axis{a}": [f"v{v}" for v in range(20)] for a in range(4)}
        tracemalloc.start()
        try:
            with pytest.raises(domain.InvalidInput) as refused:
                domain.plan_product("Big", options)
            _, peak_bytes = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak_bytes < PLAN_REFUSAL_BYTES_MAX, f"{peak_bytes} bytes to refuse"
        assert refused.value.field == "options"
        assert "160000 variants" in refused.value.reason

    def test_the_largest_options_the_limits_allow_are_refused_at_once(self) -> None:
        """8 axes x 100 values (10**16 combinations: a MemoryError before)."""
        options = {f"axis{a}": [f"v{v}" for v in range(100)] for a in range(8)}
        with pytest.raises(domain.InvalidInput, match="max 1000"):
            domain.plan_product("Big", options)

    def test_too_many_axes_or_variants_are_refused_before_reading_them(self) -> None:
        with pytest.raises(domain.InvalidInput, match="at most 8 axes"):
            domain.plan_product("Big", Untouchable({}, 10**6))
        with pytest.raises(domain.InvalidInput, match="at most 1000"):
            domain.plan_product("Big", None, UntouchableList([], 10**9))


PLAN_REFUSAL_BYTES_MAX = 1_000_000


class Untouchable(dict[str, list[str]]):
    """A mapping that claims ``length`` entries and fails the test if anything reads them."""

    def __init__(self, content: dict[str, list[str]], length: int) -> None:
        super().__init__(content)
        self.length = length

    def __len__(self) -> int:
        return self.length

    def items(self) -> Never:  # type: ignore[override]
        raise AssertionError("read every axis before checking how many there are")

    def values(self) -> Never:  # type: ignore[override]
        raise AssertionError("read every axis before checking how many there are")


class UntouchableList(list[domain.VariantSpec]):
    """A list that claims ``length`` items and fails the test if anything reads them."""

    def __init__(self, content: list[domain.VariantSpec], length: int) -> None:
        super().__init__(content)
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Never:
        raise AssertionError("checked every variant before checking how many there are")

    def __getitem__(self, index: object) -> Never:
        raise AssertionError("checked every variant before checking how many there are")


# ---------------------------------------------------------------------------- properties

skus = st.sampled_from(["A", "B", "C", "D"])
lines = st.dictionaries(skus, st.integers(1, 6), min_size=1, max_size=4)
requests = st.lists(lines, min_size=0, max_size=40)
stocks = st.dictionaries(skus, st.integers(0, 30), min_size=4, max_size=4)


@settings(max_examples=300, deadline=None)
@given(stock=stocks, batch=requests)
def test_deciding_in_order_never_oversells_and_is_all_or_nothing(
    stock: dict[str, int], batch: list[dict[str, int]]
) -> None:
    """Any stock, any sequence of requests: I1 holds, and reserved = sum of granted lines."""
    levels = {sku: level(sku, on_hand) for sku, on_hand in stock.items()}
    reqs = [request(str(n), *r.items()) for n, r in enumerate(batch)]

    after, decisions = domain.decide_in_order(levels, reqs)

    for sku, final in after.items():
        assert 0 <= final.reserved <= final.on_hand
        granted = sum(
            dict((line.sku, line.quantity) for line in d.request.lines).get(sku, 0)
            for d in decisions
            if d.held
        )
        assert final.reserved == granted


@settings(max_examples=300, deadline=None)
@given(stock=stocks, batch=requests)
def test_a_refused_request_really_did_not_fit_at_its_turn(
    stock: dict[str, int], batch: list[dict[str, int]]
) -> None:
    """Replays the decisions one by one: every refusal names a line short at that moment."""
    levels = {sku: level(sku, on_hand) for sku, on_hand in stock.items()}
    reqs = [request(str(n), *r.items()) for n, r in enumerate(batch)]
    _, decisions = domain.decide_in_order(levels, reqs)

    current = dict(levels)
    for decision in decisions:
        if decision.held:
            current = domain.hold(current, decision.request.lines)
        else:
            for short in decision.shortfall:
                assert current[short.sku].available == short.available < short.requested


@settings(max_examples=200, deadline=None)
@given(
    statuses=st.sampled_from(list(Status)),
    targets=st.lists(
        st.sampled_from([Status.CONFIRMED, Status.RELEASED, Status.EXPIRED]), min_size=1, max_size=6
    ),
    now_ms=st.integers(0, 20_000),
)
def test_a_reservation_ends_at_most_once(
    statuses: Status, targets: list[Status], now_ms: int
) -> None:
    """Applying any sequence of transitions writes at most one ending (I4)."""
    current = held(status=statuses)
    writes = 0
    for target in targets:
        try:
            if domain.check_transition(current, target, now_ms):
                writes += 1
                current = Reservation(
                    current.id,
                    current.order_id,
                    None,
                    target,
                    current.lines,
                    current.expires_at_ms,
                    0,
                )
        except domain.StockguardError:
            pass
    assert writes <= (1 if statuses is Status.HELD else 0)


ONE_OF_EACH_ERROR: list[domain.StockguardError] = [
    domain.InvalidInput("sku", "must be a string"),
    domain.UnknownSku(["B", "A"]),
    domain.DuplicateSku(["A"]),
    domain.ProductNotFound("p1"),
    domain.ReservationNotFound("r1"),
    domain.OutOfStock([domain.Shortfall("A", 2, 1), domain.Shortfall("B", 1, 0)]),
    domain.IdempotencyConflict("o1", "r1"),
    domain.InvalidState("r1", Status.CONFIRMED, "release"),
    domain.ReservationExpired("r1"),
    domain.StockChanged(StockLevel("A", 11, 0, 3), 12),
    domain.BelowReserved(StockLevel("A", 11, 5, 3), 4),
    domain.Overloaded("too many", retry_after_s=2),
    domain.StoreUnavailable("down", retry_after_s=3),
]


@pytest.mark.parametrize("error", ONE_OF_EACH_ERROR, ids=lambda e: e.kind)
def test_every_error_copies_into_an_equal_independent_instance(
    error: domain.StockguardError,
) -> None:
    """A batch answers several waiters with one error: each gets its own copy, because a
    raise grows the instance's traceback. Copies must keep every field and the message."""
    import copy
    import pickle

    for clone in (copy.copy(error), pickle.loads(pickle.dumps(error))):
        assert type(clone) is type(error) and clone is not error
        assert vars(clone) == vars(error)
        assert str(clone) == str(error)


@pytest.mark.parametrize("text", ["ABC\u202eDEF", "NEXT\u0085LINE", "ISO\u2066LATE", "C1\x9b"])
def test_controls_and_bidi_overrides_are_refused_in_every_text(text: str) -> None:
    """U+202E shows ``ABC<RLO>DEF`` as ``ABCFED``; U+0085 is a line break to many tools."""
    with pytest.raises(domain.InvalidInput):
        domain.validate_sku(text)
    with pytest.raises(domain.InvalidInput):
        domain.validate_reserve(text, [("A", 1)])
    with pytest.raises(domain.InvalidInput):
        domain.validate_reason(text)


class TestDecisions:
    """The decisions every store and strategy calls (docs/design.md#idempotency)."""

    def test_replay_or_conflict(self) -> None:
        earlier = domain.new_reservation(request("o1", ("A", 1)), "r1", 1_000)
        assert earlier.expires_at_ms == 61_000 and earlier.status is Status.HELD
        replay = domain.replay_or_conflict(earlier, request("o1", ("A", 1)))
        assert replay == domain.ReserveOutcome(earlier, created=False)
        conflict = domain.replay_or_conflict(earlier, request("o1", ("A", 2)))
        assert isinstance(conflict, domain.IdempotencyConflict)

    @pytest.mark.parametrize("target", [Status.CONFIRMED, Status.RELEASED])
    def test_a_hold_past_expiry_ends_expired_and_its_confirm_is_refused(
        self, target: Status
    ) -> None:
        ending = domain.ending(held(expires_at_ms=100), target, now_ms=100)
        assert ending.writes is Status.EXPIRED
        if target is Status.CONFIRMED:
            with pytest.raises(domain.ReservationExpired):
                ending.result()
        else:
            assert ending.result().status is Status.EXPIRED

    def test_ending_before_expiry_and_on_terminal_states(self) -> None:
        assert domain.ending(held(), Status.CONFIRMED, 0).writes is Status.CONFIRMED
        replay = domain.ending(held(status=Status.CONFIRMED), Status.CONFIRMED, 0)
        assert replay.writes is None and replay.result().status is Status.CONFIRMED
        refused = domain.ending(held(status=Status.RELEASED), Status.CONFIRMED, 0)
        assert refused.writes is None and isinstance(refused.answer, domain.InvalidState)

    def test_refusal_names_every_line_when_stock_came_back(self) -> None:
        lines = request("o", ("A", 2)).lines
        error = domain.refusal({"A": level("A", 5)}, lines)
        assert isinstance(error, domain.OutOfStock) and error.shortfalls[0].available == 5
        assert isinstance(domain.refusal({}, lines), domain.UnknownSku)
