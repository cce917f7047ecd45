"""Whether a missing Chromium skips the browser tests or fails them: under CI it fails."""

from __future__ import annotations

import pytest

from tests.browser import conftest
from tests.browser.conftest import missing_browser

CHROMIUM = "/usr/bin/chromium"


def test_with_a_browser_nothing_is_skipped_or_failed() -> None:
    assert missing_browser(CHROMIUM, {}) is None
    assert missing_browser(CHROMIUM, {"CI": "true"}) is None


def test_without_a_browser_outside_ci_the_tests_are_skipped_with_the_reason() -> None:
    for environ in ({}, {"CI": ""}):
        verdict = missing_browser(None, environ)
        assert verdict is not None
        assert verdict.fail is False
        assert "Chromium is not installed" in verdict.message
        assert "apt-get install chromium" in verdict.message


@pytest.mark.parametrize("value", ["true", "1", "yes", "false", "0"])
def test_without_a_browser_under_ci_the_tests_fail_with_a_clear_message(value: str) -> None:
    verdict = missing_browser(None, {"CI": value})
    assert verdict is not None
    assert verdict.fail is True
    assert "Chromium is not installed" in verdict.message
    assert "CI" in verdict.message


class _Item:
    def __init__(self, *fixtures: str) -> None:
        self.fixturenames = list(fixtures)


def test_only_tests_that_use_the_browser_are_skipped_or_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(conftest, "CHROMIUM", None)
    monkeypatch.delenv("CI", raising=False)
    conftest.pytest_runtest_setup(_Item("db"))  # needs no browser: runs
    with pytest.raises(pytest.skip.Exception, match="Chromium is not installed"):
        conftest.pytest_runtest_setup(_Item("open_page", "browser"))
    monkeypatch.setenv("CI", "1")
    conftest.pytest_runtest_setup(_Item("db"))
    with pytest.raises(pytest.fail.Exception, match="Chromium is not installed"):
        conftest.pytest_runtest_setup(_Item("open_page", "browser"))
    monkeypatch.setattr(conftest, "CHROMIUM", "/usr/bin/chromium")
    conftest.pytest_runtest_setup(_Item("open_page", "browser"))
