"""`migrate`, through the owner role when there is one.

In a deployment the application's `DATABASE_URL` is the runtime role, which may not create or
alter tables; `DATABASE_OWNER_URL` (the `owner` alias) is the role that owns them. Plain
`manage.py migrate` then migrates as the owner and grants the runtime role
(`workflows.dbroles`), so no deployment step can forget which role to use.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import DEFAULT_DB_ALIAS


class Command(DjangoMigrate):
    help = DjangoMigrate.help + " Runs as DATABASE_OWNER_URL's role when it is set."

    def handle(self, *args: Any, **options: Any) -> None:
        if options["database"] == DEFAULT_DB_ALIAS and "owner" in settings.DATABASES:
            options["database"] = "owner"
        super().handle(*args, **options)
