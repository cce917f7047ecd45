"""Labelled examples from files: JSONL (one object per line) or CSV (a header row).

Both name the text and the label field (`text` and `label` unless told otherwise), skip
blank lines and ignore other fields; a bad line or a missing column raises ValueError naming
the file and, for a bad line, its number. Pure: no Django.
"""

from __future__ import annotations

import csv
import json
import os

from workflows.ai.classifier import Example


def load_jsonl(
    path: str | os.PathLike[str], *, text_key: str = "text", label_key: str = "label"
) -> list[Example]:
    """Read examples, one `{"text": ..., "label": ...}` object per line."""
    examples: list[Example] = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{os.fspath(path)}, line {lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
            text, label = row.get(text_key), row.get(label_key)
            examples.append(_example(where, text, label, text_key, label_key))
    return examples


def load_csv(
    path: str | os.PathLike[str], *, text_column: str = "text", label_column: str = "label"
) -> list[Example]:
    """Read examples from a CSV file whose first row names the columns."""
    examples: list[Example] = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        for wanted in (text_column, label_column):
            if wanted not in columns:
                raise ValueError(
                    f"{os.fspath(path)}: no column {wanted!r} (columns: {', '.join(columns)})"
                )
        for row in reader:
            if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
                continue
            where = f"{os.fspath(path)}, line {reader.line_num}"
            text, label = row.get(text_column), row.get(label_column)
            examples.append(_example(where, text, label, text_column, label_column))
    return examples


def load_examples(
    path: str | os.PathLike[str], *, text: str = "text", label: str = "label"
) -> list[Example]:
    """CSV for a `.csv` file, JSONL for anything else."""
    if os.fspath(path).lower().endswith(".csv"):
        return load_csv(path, text_column=text, label_column=label)
    return load_jsonl(path, text_key=text, label_key=label)


def _example(where: str, text: object, label: object, text_key: str, label_key: str) -> Example:
    if not isinstance(text, str):
        raise ValueError(f"{where}: {text_key!r} must be a string")
    if not isinstance(label, str) or not label:
        raise ValueError(f"{where}: {label_key!r} must be a non-empty string")
    return Example(text=text, label=label)
