"""What route functions receive: the engine of this process, and checked path values."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError

from stockguard.domain import ID_LEN_MAX, SKU_LEN_MAX
from stockguard.engine import Engine
from stockguard.service.models import NO_CONTROL_CHARS


def engine_of(request: Request) -> Engine:
    """The engine the lifespan opened for this process."""
    engine: Engine = request.app.state.engine
    return engine


def note_order(request: Request, order_id: str) -> None:
    """Names the order in this request's log line (see middleware)."""
    request.state.order_id = order_id


UNKNOWN_PARAMS_LISTED_MAX = 10

EngineDep = Annotated[Engine, Depends(engine_of)]
SkuPath = Annotated[
    str, Path(min_length=1, max_length=SKU_LEN_MAX, pattern=NO_CONTROL_CHARS, description="SKU")
]
LocationPath = Annotated[
    str,
    Path(
        min_length=1, max_length=SKU_LEN_MAX, pattern=NO_CONTROL_CHARS, description="Location code"
    ),
]
"""A location code: a SKU's rules (domain.locations.LOCATION_CODE_LEN_MAX is SKU_LEN_MAX)."""
IdPath = Annotated[str, Path(min_length=1, max_length=ID_LEN_MAX, pattern=NO_CONTROL_CHARS)]


def reject_unknown_query(request: Request) -> None:
    """Unknown query parameters are refused like unknown body fields (docs/design.md#input): a typo
    such as ``?stauts=held`` must not silently list everything."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    declared = _query_names(dependant)
    unknown = sorted(set(request.query_params) - declared)
    if unknown:
        raise RequestValidationError(
            [
                {"type": "extra_forbidden", "loc": ("query", name), "msg": "unknown parameter"}
                for name in unknown[:UNKNOWN_PARAMS_LISTED_MAX]
            ]
        )


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
