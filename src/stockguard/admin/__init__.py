"""The admin web page at ``/admin`` (DESIGN §6): see ``router.admin_router``."""

from stockguard.admin.router import admin_router

__all__ = ["admin_router"]
