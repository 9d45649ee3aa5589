"""The HTTP face of stockguard (docs/design.md#api): FastAPI app, auth, errors, sweeper, serving.

``create_app`` and ``create_app_from_env`` are loaded on first use (PEP 562), not when the
package is: the admin page imports modules of this package (``service.watch``) and the
app imports the admin page, so an eager import here made importing ``stockguard.admin``
first a circular import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stockguard.service.app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from stockguard.service import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
