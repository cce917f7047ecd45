"""The Django admin, one module per area; importing this package registers every page."""

from workflows.admin import callbacks, core, webhooks

__all__ = ["callbacks", "core", "webhooks"]
