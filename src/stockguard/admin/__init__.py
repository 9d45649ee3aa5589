"""The admin web page at ``/admin`` (docs/design.md#admin-page): see ``router.admin_router``."""

from stockguard.admin.router import admin_router

__all__ = ["admin_router"]
