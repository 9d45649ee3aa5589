"""Products and their variants: one SKU per combination of option values."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence

from stockguard.domain.errors import InvalidInput
from stockguard.domain.model import (
    OPTION_AXES_MAX,
    OPTION_TEXT_LEN_MAX,
    OPTION_VALUES_MAX,
    PRODUCT_NAME_LEN_MAX,
    VARIANTS_MAX,
    ProductSpec,
    VariantSpec,
)
from stockguard.domain.validation import _validate_text, validate_on_hand, validate_sku


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").upper() or "X"


def plan_product(
    name: object,
    options: Mapping[str, Sequence[str]] | None = None,
    variants: Sequence[VariantSpec] | None = None,
    initial_on_hand: object = None,
    sku_prefix: str | None = None,
) -> ProductSpec:
    """Validates a product and lists its variants.

    A product without options is the product of zero axes: exactly one variant with no
    option values, so the rest of the code never asks whether a product "has options".
    Without explicit variants every combination of option values becomes a SKU named
    ``PREFIX-VALUE-VALUE`` (prefix: the slugged name unless given).
    """
    product_name = _validate_text(name, "name", PRODUCT_NAME_LEN_MAX)
    on_hand_default = (
        0 if initial_on_hand is None else validate_on_hand(initial_on_hand, "initial_on_hand")
    )
    # Every size is checked before the items it counts are read, and the number of
    # combinations is computed from the axis sizes before any is built: 8 axes of 100
    # values would otherwise make 10**16 of them before the limit is looked at.
    if options is not None and len(options) > OPTION_AXES_MAX:
        raise InvalidInput("options", f"at most {OPTION_AXES_MAX} axes")
    if variants is not None and len(variants) > VARIANTS_MAX:
        raise InvalidInput("variants", f"at most {VARIANTS_MAX}")
    axes: dict[str, tuple[str, ...]] = {}
    for axis, values in (options or {}).items():
        _validate_text(axis, "options", OPTION_TEXT_LEN_MAX)
        if isinstance(values, str) or not 1 <= len(values) <= OPTION_VALUES_MAX:
            raise InvalidInput(f"options.{axis}", f"must list 1-{OPTION_VALUES_MAX} values")
        checked = tuple(_validate_text(v, f"options.{axis}", OPTION_TEXT_LEN_MAX) for v in values)
        if len(set(checked)) != len(checked):
            raise InvalidInput(f"options.{axis}", "values must be distinct")
        axes[axis] = checked

    if variants:
        planned = tuple(_check_variant(i, v, axes) for i, v in enumerate(variants))
    else:
        combination_count = math.prod(len(values) for values in axes.values())
        if combination_count > VARIANTS_MAX:
            raise InvalidInput("options", f"make {combination_count} variants, max {VARIANTS_MAX}")
        prefix = _slug(sku_prefix or product_name)
        planned = tuple(
            VariantSpec(
                validate_sku("-".join([prefix, *(_slug(v) for v in combo)]), "options"),
                dict(zip(axes, combo, strict=True)),
                on_hand_default,
            )
            for combo in itertools.product(*axes.values())
        )
    skus = [v.sku for v in planned]
    if len(set(skus)) != len(skus):
        raise InvalidInput("variants", "two variants share a sku")
    combos = [tuple(sorted(v.options.items())) for v in planned]
    if len(set(combos)) != len(combos):
        raise InvalidInput("variants", "two variants share the same option values")
    return ProductSpec(product_name, axes, planned)


def _check_variant(
    index: int, variant: VariantSpec, axes: Mapping[str, Sequence[str]]
) -> VariantSpec:
    sku = validate_sku(variant.sku, f"variants[{index}].sku")
    if set(variant.options) != set(axes):
        raise InvalidInput(
            f"variants[{index}].options", f"must name exactly the axes {sorted(axes)}"
        )
    for axis, value in variant.options.items():
        if value not in axes[axis]:
            raise InvalidInput(
                f"variants[{index}].options.{axis}", f"{value!r} is not a listed value"
            )
    on_hand = validate_on_hand(variant.on_hand, f"variants[{index}].on_hand")
    return VariantSpec(sku, dict(variant.options), on_hand)
