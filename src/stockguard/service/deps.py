"""What route functions receive: the engine of this process, and checked path values."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from stockguard.domain import SKU_LEN_MAX
from stockguard.engine import Engine
from stockguard.service.models import ID_LEN_MAX, NO_CONTROL_CHARS


def engine_of(request: Request) -> Engine:
    """The engine the lifespan opened for this process."""
    engine: Engine = request.app.state.engine
    return engine


def note_order(request: Request, order_id: str) -> None:
    """Names the order in this request's log line (see middleware)."""
    request.state.order_id = order_id


EngineDep = Annotated[Engine, Depends(engine_of)]
SkuPath = Annotated[
    str, Path(min_length=1, max_length=SKU_LEN_MAX, pattern=NO_CONTROL_CHARS, description="SKU")
]
IdPath = Annotated[str, Path(min_length=1, max_length=ID_LEN_MAX, pattern=NO_CONTROL_CHARS)]
