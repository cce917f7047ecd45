"""Cohen's and Fleiss' kappa, checked against worked examples whose numbers are in the tests."""

from __future__ import annotations

import pytest

from workflows.agreement import cohen_kappa, fleiss_kappa


def expand(counts: list[int], categories: str) -> list[str]:
    return [c for c, n in zip(categories, counts, strict=True) for _ in range(n)]


def test_cohens_kappa_of_the_two_grant_readers() -> None:
    # Wikipedia, "Cohen's kappa", worked example: 50 grant proposals, two readers, yes/no.
    # Both yes 20, A yes B no 5, A no B yes 10, both no 15. p_o = 35/50 = 0.7;
    # p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_cohens_kappa_of_a_three_category_table() -> None:
    # A 3x3 table worked by hand (rows rater A, columns rater B), n = 100:
    #   a: 25 2 3 / b: 5 20 5 / c: 0 5 35.  p_o = 80/100 = 0.8.
    #   A's margins 30 30 40, B's 30 27 43: p_e = (900 + 810 + 1720) / 10000 = 0.343.
    #   kappa = (0.8 - 0.343) / (1 - 0.343) = 0.457 / 0.657 = 0.69558...
    table = {"a": [25, 2, 3], "b": [5, 20, 5], "c": [0, 5, 35]}
    pairs = [(row, col) for row, counts in table.items() for col in expand(counts, "abc")]
    assert cohen_kappa(pairs) == pytest.approx(0.457 / 0.657)


def test_fleiss_kappa_of_fourteen_raters_on_ten_subjects() -> None:
    # Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters each, 5 categories.
    # P-bar = 0.378, P-bar_e = 0.213, kappa = 0.210 (to three places).
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    items = [expand(row, "12345") for row in table]
    assert fleiss_kappa(items) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_of_two_raters_is_scotts_pi() -> None:
    # With two ratings per item, Fleiss' kappa is Scott's pi. The grant readers again:
    # pooled margins yes 55/100, no 45/100: p_e = 0.3025 + 0.2025 = 0.505;
    # p_o = 0.7; pi = (0.7 - 0.505) / (1 - 0.505) = 0.195 / 0.495 = 0.39393...
    items = [["yes", "yes"]] * 20 + [["yes", "no"]] * 5 + [["no", "yes"]] * 10 + [["no", "no"]] * 15
    assert fleiss_kappa(items) == pytest.approx(0.195 / 0.495)


def test_perfect_and_chance_agreement() -> None:
    assert cohen_kappa([("a", "a"), ("b", "b")]) == pytest.approx(1.0)
    assert fleiss_kappa([["a", "a", "a"], ["b", "b", "b"]]) == pytest.approx(1.0)
    # Every item rated a by A and b by B: observed 0, expected 0, kappa 0 - 0 / 1 = 0.
    assert cohen_kappa([("a", "b"), ("a", "b")]) == pytest.approx(0.0)


def test_kappa_is_undefined_when_chance_explains_everything() -> None:
    # One category only: expected agreement is 1, and kappa's denominator is 0.
    assert cohen_kappa([("a", "a"), ("a", "a")]) is None
    assert fleiss_kappa([["a", "a"], ["a", "a"]]) is None


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "no items"),
        ([["a"]], "at least two ratings per item"),
        ([["a", "b"], ["a", "b", "c"]], "every item needs the same number of ratings"),
    ],
)
def test_fleiss_refuses_what_it_cannot_rate(items: list[list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fleiss_kappa(items)


def test_cohen_refuses_no_pairs() -> None:
    with pytest.raises(ValueError, match="no items"):
        cohen_kappa([])
