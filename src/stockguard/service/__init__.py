"""The HTTP face of stockguard (docs/design.md#api): FastAPI app, auth, errors, sweeper, serving."""

from stockguard.service.app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]
