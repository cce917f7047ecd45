"""Take the reviewer's guide's screenshots (docs/img/*.png) from a running desk.

    make run                                      # another shell: the demo, on port 8000
    .venv/bin/python docs/img/screenshots.py      # or --base-url http://127.0.0.1:8765

It logs in as the demo reviewer, opens pages and presses keys, and never sends a decision:
the demo data is left as it was. It needs Chromium (`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REASON = "Legal threats go to the account team, who own escalated customers."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="demo-reviewer")
    parser.add_argument("--password", default="demo")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("Chromium is not installed: apt-get install chromium", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        try:
            shoot(page, args.base_url.rstrip("/"), args.user, args.password, args.out)
        finally:
            browser.close()
    return 0


def shoot(page: Any, base: str, user: str, password: str, out: Path) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", user)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/review/")
    # The queue, with its first task (the highest priority) selected.
    page.keyboard.press("j")
    page.screenshot(path=out / "queue.png")
    # That task, as a reviewer first sees it.
    page.keyboard.press("Enter")
    page.wait_for_url("**/review/tasks/*/")
    page.wait_for_selector("text=Why a person:")
    page.mouse.move(0, 0)
    page.screenshot(path=out / "task.png", full_page=True)
    # Edit & approve: e puts the cursor in the reason; Tab moves on to the answer's fields.
    page.keyboard.press("e")
    page.keyboard.type(REASON)
    for _ in range(3):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "out-label":
            break
    answer = page.input_value("#out-label")
    page.select_option("#out-label", "account" if answer != "account" else "billing")
    page.locator("#decide").screenshot(path=out / "edit.png")
    # The shortcuts, over the task being edited.
    page.keyboard.press("Escape")
    page.keyboard.press("?")
    page.wait_for_selector("#help[open]")
    page.screenshot(path=out / "shortcuts.png")


if __name__ == "__main__":
    sys.exit(main())
