"""Container health check for the web service: exit 0 only when the URL answers 200.

    python docker/probe.py http://127.0.0.1:8000/readyz

The request names the first of ALLOWED_HOSTS as its Host, so Django does not refuse it as a
foreign host (a leading dot or `*` becomes a name inside it); with none set, `localhost`. The
standard library only, and no Django: the check must not cost a Django start-up every time.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def probe_host(allowed_hosts: str) -> str:
    for entry in allowed_hosts.split(","):
        entry = entry.strip()
        if entry == "*":
            return "localhost"
        if entry:
            return "probe" + entry if entry.startswith(".") else entry
    return "localhost"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: probe.py URL", file=sys.stderr)
        return 2
    request = urllib.request.Request(  # noqa: S310 (the URL is the health check's own)
        argv[0], headers={"Host": probe_host(os.environ.get("ALLOWED_HOSTS", ""))}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=float(os.environ.get("PROBE_TIMEOUT", "5"))) as answer:
            print(answer.status, answer.read(2048).decode(errors="replace"))
            return 0 if answer.status == 200 else 1
    except urllib.error.HTTPError as exc:  # 503: not ready; the body says which check
        print(exc.code, exc.read(2048).decode(errors="replace"))
        return 1
    except OSError as exc:
        print(f"no answer: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
