"""The shell commands in README.md and docs/*.md work when pasted into a fresh shell.

A fenced block whose info string is `sh runnable` is run here, as a user would paste it after
`make run`: by bash (`-euo pipefail`, so a failing line, an unset variable or a failing pipe
fails the block) in a fresh shell (only PATH, HOME and LANG; no virtualenv on PATH), in the
project root, while a `make run` (`python -m hitl.devstack run`: migrated, seeded, web, worker
and beat) is running on a private stack in a temporary HITL_VAR_DIR. Blocks run in document
order, README.md first, so a block may use what an earlier one created.

Every shell block (`sh`, `bash`, `shell`, `console`), marked or not, must be concrete: no
placeholder such as FILE.yaml, SLUG, <name>, [--draft] or "...".

Mark a block only if it finishes in seconds to a minute and writes nothing outside var/ and
the git-ignored bench/results/ (a benchmark's full run, or `make run`, stays unmarked).
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.freshshell import ROOT, fresh_env, private_var

SHELLS = {"sh", "bash", "shell", "console"}
MARKER = "runnable"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    info: str
    text: str

    @property
    def shell(self) -> bool:
        words = self.info.split()
        return bool(words) and words[0] in SHELLS

    @property
    def runnable(self) -> bool:
        return MARKER in self.info.split()[1:]

    @property
    def where(self) -> str:
        try:
            return f"{self.path.relative_to(ROOT)}:{self.line}"
        except ValueError:
            return f"{self.path}:{self.line}"


def blocks(path: Path, markdown: str | None = None) -> list[Block]:
    """The fenced code blocks of a Markdown file, indented ones (in list items) included."""
    lines = (path.read_text(encoding="utf-8") if markdown is None else markdown).splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body, j = [], i + 1
        while j < len(lines):
            closing = FENCE.match(lines[j])
            if closing and closing["fence"].startswith(fence) and not closing["info"]:
                break
            # Content is indented like its fence (inside a list item, say): drop that much.
            line = lines[j]
            body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            j += 1
        found.append(Block(path, i + 1, opening["info"], "\n".join(body) + "\n"))
        i = j + 1
    return found


def placeholders(text: str) -> list[str]:
    """Words in a command that stand for something the reader is meant to fill in."""
    try:
        # Comments are free text; a backslash-newline continues the command.
        tokens = shlex.split(text.replace("\\\n", " "), comments=True)
    except ValueError as exc:
        return [f"(cannot parse the block: {exc})"]
    found = []
    for previous, token in zip(["", *tokens], tokens, strict=False):
        word = token.split("=", 1)[1] if re.match(r"[A-Za-z_]\w*=", token) else token
        if not word or _exists(word):  # README.md is a file, not a placeholder
            continue
        if previous in ("-X", "--request") and word in HTTP_METHODS:  # curl -X POST
            continue
        if _is_json(word):  # a request body: its strings (EUR) are data, not placeholders
            continue
        if (
            re.search(r"<[^<>\s]+>", word)  # <slug>
            or (word not in ("[", "]", "[[", "]]") and (word[0] == "[" or word[-1] == "]"))
            or "..." in word
            or "…" in word
            # FILE.yaml, SLUG, N, bench.NAME; not $HOME, ${HOME}, -X, or NAME=value
            or re.search(r"(?:^|[^\w$\-{])[A-Z][A-Z0-9_]*(?![\w}])", word)
        ):
            found.append(token)
    return found


HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}


def _exists(word: str) -> bool:
    try:
        return (ROOT / word).exists()
    except OSError:  # a whole script passed as one argument is too long to be a file name
        return False


def _is_json(word: str) -> bool:
    if word[:1] not in "{[":
        return False
    try:
        json.loads(word)
    except ValueError:
        return False
    return True


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def all_blocks() -> list[Block]:
    return [block for path in documents() for block in blocks(path)]


SHELL_BLOCKS = [block for block in all_blocks() if block.shell]
RUNNABLE = [block for block in SHELL_BLOCKS if block.runnable]


# --- the checker's own rules ---------------------------------------------------------------


def test_blocks_are_found_with_their_line_and_marker(tmp_path: Path) -> None:
    markdown = (
        "# doc\n"
        "```sh runnable\n"
        "./manage.py workflow schema\n"
        "```\n"
        "\n"
        "- a list item:\n"
        "\n"
        "  ```sh\n"
        "  make run\n"
        "  ```\n"
        "```yaml runnable\n"
        "a: 1\n"
        "```\n"
    )
    found = blocks(tmp_path / "doc.md", markdown)

    assert [(b.line, b.shell, b.runnable, b.text) for b in found] == [
        (2, True, True, "./manage.py workflow schema\n"),
        (8, True, False, "make run\n"),
        (11, False, True, "a: 1\n"),
    ]


@pytest.mark.parametrize(
    "command",
    [
        "./manage.py workflow import FILE.yaml",
        "./manage.py workflow export SLUG --version N",
        "./manage.py workflow export <slug>",
        "./manage.py workflow import [--draft] hitl/demo/workflows/expense-intake.yaml",
        ".venv/bin/python -m bench.NAME",
        "./manage.py localmodel train tickets ...",
        "MODEL=NAME ./manage.py localmodel list",
        "curl -X POST https://example.com/api/v1/workflows/SLUG/runs",
        "curl -d '{\"input\": ...}' https://example.com",
    ],
)
def test_a_placeholder_is_caught(command: str) -> None:
    assert placeholders(command)


@pytest.mark.parametrize(
    "command",
    [
        "./manage.py workflow import hitl/demo/workflows/expense-intake.yaml  # FILE: any YAML",
        "sed 's/a/b/' hitl/demo/workflows/ticket-triage.yaml \\\n  | ./manage.py workflow import -",
        "make test ARGS='-k faults -x'",
        'HITL_VAR_DIR="$HOME/hitl-var" ./manage.py check',
        "grep -c . README.md",
        "python3 -X dev manage.py check",
        'curl -X POST -d \'{"currency": "EUR"}\' https://example.com/api/v1/runs',
    ],
)
def test_a_concrete_command_passes(command: str) -> None:
    assert placeholders(command) == []


def test_the_docs_mark_runnable_blocks_and_only_shell_ones() -> None:
    assert any(block.path.name == "README.md" for block in RUNNABLE)
    misplaced = [b.where for b in all_blocks() if b.runnable and not b.shell]
    assert misplaced == [], "only shell blocks can be runnable"


# --- the documents ---------------------------------------------------------------------------


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda block: block.where)
def test_shell_block_has_no_placeholder(block: Block) -> None:
    found = placeholders(block.text)
    assert found == [], f"{block.where}: replace {found} with a concrete example in\n{block.text}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A `make run` on a private stack in a temporary var/; yields that var/."""
    if not VENV_PYTHON.exists():
        pytest.skip("no .venv: `make install` creates the interpreter the docs rely on")
    log = tmp_path_factory.mktemp("docs") / "make-run.log"
    command = [str(VENV_PYTHON), "-m", "hitl.devstack", "run", "--port", str(free_port())]
    with private_var() as var, log.open("w") as out:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=fresh_env(var),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # no terminal: devstack forwards our signals itself
        )
        try:
            deadline = time.monotonic() + 300
            while "hitl is running at" not in log.read_text():
                assert proc.poll() is None, f"make run exited:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"make run did not start:\n{log.read_text()}"
                time.sleep(0.5)
            yield var
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.where)
def test_runnable_block_works_in_a_fresh_shell(block: Block, make_run: Path) -> None:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text],
        cwd=ROOT,
        env=fresh_env(make_run),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (
        f"{block.where}: this block exited with {done.returncode}:\n\n{block.text}\n"
        f"output:\n{done.stdout}"
    )
