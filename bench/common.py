"""What every `bench/` script shares: its flags, its table, and its JSON results file.

Every script runs as `python -m bench.<name> [--quick] [--json PATH]`. `--quick` must finish in
under two minutes. The JSON file puts headline figures at the top level, so they can be compared
across runs and machines without knowing each script's layout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def parser(description: str) -> argparse.ArgumentParser:
    """The shared flags; a script may add its own before parsing."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--quick", action="store_true", help="a smaller run, under two minutes")
    result.add_argument("--json", metavar="PATH", type=Path, help="also write results as JSON")
    return result


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None
) -> None:
    if title:
        print(f"\n{title}")
    print(format_table(headers, rows))


def machine() -> dict[str, Any]:
    """Where the figures were measured: they mean little without it."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
    }


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or None
    for row in text.splitlines():
        if row.startswith("model name"):
            return row.split(":", 1)[1].strip()
    return platform.processor() or None


def write_json(path: Path, benchmark: str, results: Mapping[str, Any]) -> None:
    """Write `results` (headline numbers at the top level) with the machine and a timestamp."""
    document = {
        "benchmark": benchmark,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        **results,
        "machine": machine(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {path}")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile by rank (no interpolation): a figure that was actually measured."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fresh_database(url: str) -> str:
    """Drop and create `<name>_bench` on the server in `url`; return its URL.

    Benchmarks load their own data, so they never touch the database a developer works in.
    """
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    parts = urlsplit(url)
    name = (parts.path.lstrip("/") or "hitl") + "_bench"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path="/" + name))
