"""Form fields as the admin typed them → typed values, or a ``domain.InvalidInput``.

Browsers send every field as text. These parsers accept what a person types ("+5",
" 12 ", "S, M, L") and refuse the rest with the field's name, before the engine is
called, so a bad form is answered with a message and nothing is written. The engine
validates again; the limits stay the domain's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.datastructures import FormData

from stockguard import domain
from stockguard.domain import OPTION_AXES_MAX, Status

FIELD_LEN_MAX = 4_096
"""No single form field is longer (a list of option values included)."""
FORM_FIELDS_MAX = 2 * OPTION_AXES_MAX + 16
"""Fields one admin form may carry; the multipart parser refuses more."""
INT_DIGITS_MAX = 16
"""Enough for ON_HAND_MAX (10**12) with a sign; longer text is not a number we take."""

_INTEGER = re.compile(r"[+-]?\d{1," + str(INT_DIGITS_MAX) + r"}")
_MINUS_SIGNS = str.maketrans({"−": "-", "–": "-"})


def text(form: FormData | Mapping[str, str], name: str) -> str:
    """A single text field, stripped; absent or a file upload reads as empty."""
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    if len(value) > FIELD_LEN_MAX:
        raise domain.InvalidInput(name, f"must be at most {FIELD_LEN_MAX} characters")
    return value.strip()


def integer(form: FormData | Mapping[str, str], name: str, *, required: bool = True) -> int | None:
    raw = text(form, name).replace(" ", "").translate(_MINUS_SIGNS)
    if not raw:
        if required:
            raise domain.InvalidInput(name, "is required")
        return None
    if not _INTEGER.fullmatch(raw):
        raise domain.InvalidInput(name, "must be a whole number")
    return int(raw)


def required_integer(form: FormData | Mapping[str, str], name: str) -> int:
    value = integer(form, name)
    assert value is not None, "required fields are never None"
    return value


def status(raw: str) -> Status | None:
    if not raw:
        return None
    try:
        return Status(raw)
    except ValueError:
        raise domain.InvalidInput("status", f"must be one of {[s.value for s in Status]}") from None


@dataclass(frozen=True, slots=True)
class ProductForm:
    """The new-product form as typed (shown again when it is refused)."""

    name: str = ""
    sku_prefix: str = ""
    initial_on_hand: str = "0"
    axes: list[tuple[str, str]] = field(default_factory=lambda: [("", ""), ("", "")])

    @classmethod
    def read(cls, form: FormData) -> ProductForm:
        names = form.getlist("axis_name")
        values = form.getlist("axis_values")
        if len(names) != len(values):
            raise domain.InvalidInput("options", "every option needs a name and its values")
        if len(names) > OPTION_AXES_MAX:
            raise domain.InvalidInput("options", f"at most {OPTION_AXES_MAX} options")
        axes = [
            (str(n).strip(), str(v).strip())
            for n, v in zip(names, values, strict=True)
            if isinstance(n, str) and isinstance(v, str)
        ]
        return cls(
            name=text(form, "name"),
            sku_prefix=text(form, "sku_prefix"),
            initial_on_hand=text(form, "initial_on_hand"),
            axes=axes or [("", "")],
        )

    def options(self) -> dict[str, list[str]]:
        """Axis name → values ("S, M, L" → ["S", "M", "L"]); blank rows are skipped."""
        chosen: dict[str, list[str]] = {}
        for number, (axis, listed) in enumerate(self.axes, start=1):
            if len(axis) > FIELD_LEN_MAX or len(listed) > FIELD_LEN_MAX:
                raise domain.InvalidInput("options", f"option {number} is too long")
            values = [value.strip() for value in listed.split(",") if value.strip()]
            if not axis and not values:
                continue
            if not axis:
                raise domain.InvalidInput("options", f"option {number} has values but no name")
            if not values:
                raise domain.InvalidInput("options", f"option {axis!r} lists no values")
            if axis in chosen:
                raise domain.InvalidInput("options", f"option {axis!r} is listed twice")
            chosen[axis] = values
        return chosen

    def initial(self) -> int:
        return required_integer({"initial_on_hand": self.initial_on_hand}, "initial_on_hand")


POLICY_FIELDS = ("safety_stock", "backorder_max", "customer_max", "low_stock_threshold")
"""The policy form's fields, in the order the card shows them (docs/design.md#stock-policy)."""
POLICY_OPTIONAL = frozenset({"customer_max", "low_stock_threshold"})
"""Fields an admin may leave empty: empty means none (no cap, no low-stock events)."""


@dataclass(frozen=True, slots=True)
class PolicyForm:
    """The stock-policy form as typed, and the policy it showed when the page was drawn.

    ``values`` is what the admin wants; ``expected`` is the policy as the page showed it,
    carried in hidden ``expected_*`` fields so the write is a compare-and-set against
    what this admin saw (docs/design.md#seed-001, #stock-policy). Both stay text until
    ``policy()`` / ``expected_policy()`` so a refused form is shown again as typed.
    """

    values: Mapping[str, str]
    expected: Mapping[str, str]

    @staticmethod
    def texts_of(policy: domain.Policy) -> dict[str, str]:
        """A stored policy as the form's text (None is an empty field)."""
        shown = {name: getattr(policy, name) for name in POLICY_FIELDS}
        return {name: "" if value is None else str(value) for name, value in shown.items()}

    @classmethod
    def showing(cls, policy: domain.Policy) -> PolicyForm:
        """The form as a fresh page draws it: the stored policy, expected to be unchanged."""
        texts = cls.texts_of(policy)
        return cls(values=texts, expected=texts)

    @classmethod
    def read(cls, form: FormData) -> PolicyForm:
        return cls(
            values={name: text(form, name) for name in POLICY_FIELDS},
            expected={name: text(form, f"expected_{name}") for name in POLICY_FIELDS},
        )

    def policy(self) -> domain.Policy:
        """The policy to save; a malformed field is ``InvalidInput`` naming it."""
        return _policy_of(self.values, "")

    def expected_policy(self) -> domain.Policy:
        """The policy the page showed. Its required fields are required here too: a write
        from this page is never unconditional, whatever a hand-made request leaves out."""
        return _policy_of(self.expected, "expected_")


def _policy_of(texts: Mapping[str, str], prefix: str) -> domain.Policy:
    numbers: dict[str, int | None] = {}
    for name in POLICY_FIELDS:
        numbers[name] = integer(
            {prefix + name: texts.get(name, "")},
            prefix + name,
            required=name not in POLICY_OPTIONAL,
        )
    safety_stock, backorder_max = numbers["safety_stock"], numbers["backorder_max"]
    assert safety_stock is not None, "a required field"
    assert backorder_max is not None, "a required field"
    return domain.Policy(
        safety_stock=safety_stock,
        backorder_max=backorder_max,
        customer_max=numbers["customer_max"],
        low_stock_threshold=numbers["low_stock_threshold"],
    )
