"""The service fixtures (``make_api``, ``serve``) for the events tests too."""

from service.conftest import make_api, serve

__all__ = ["make_api", "serve"]
