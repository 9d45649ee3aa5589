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
