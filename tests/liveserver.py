"""A live server that connects as the application's database role.

pytest-django's live server serves from threads that open connections with the `default`
alias's settings: the owner's, in the tests' layout (tests/conftest.py). A deployment serves
as the runtime role, which may not erase or rewrite the evidence, so the browser and client
tests do too: every request thread gets its own `default` connection with the `runtime`
alias's settings (the test database, the application's role), closed when the request ends.
"""

from __future__ import annotations

from typing import Any

from django.core.servers.basehttp import ThreadedWSGIServer
from django.db import connections
from django.test.testcases import LiveServerThread


def runtime_connection() -> Any:
    """A new connection under the alias `default`, as the runtime role."""
    runtime = connections["runtime"]
    return type(runtime)(connections.settings["runtime"], "default")


class RuntimeRoleServer(ThreadedWSGIServer):
    def process_request_thread(self, request: Any, client_address: Any) -> None:
        connections["default"] = runtime_connection()
        # The base class handles the request, then closes this thread's connections.
        super().process_request_thread(request, client_address)


class RuntimeRoleLiveServerThread(LiveServerThread):
    server_class = RuntimeRoleServer
