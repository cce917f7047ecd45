"""The diff component: what a decision changed in the AI's answer, field by field."""

from __future__ import annotations

from django.template import Context, Template

from hitl.review.templatetags.output_diff import ABSENT, FieldChange, output_changes


def render(template: str, **context: object) -> str:
    return Template("{% load output_diff %}" + template).render(Context(context))


def test_equal_outputs_have_no_changes() -> None:
    assert output_changes({"label": "billing"}, {"label": "billing"}) == []
    assert output_changes(None, None) == []
    assert output_changes([1, 2], [1, 2]) == []


def test_changed_added_and_removed_fields_in_order() -> None:
    before = {"label": "billing", "team": "a", "note": "x"}
    after = {"label": "refund", "note": "x", "priority": 2}
    assert output_changes(before, after) == [
        FieldChange(("label",), "billing", "refund"),
        FieldChange(("team",), "a", ABSENT),
        FieldChange(("priority",), ABSENT, 2),
    ]
    assert [c.kind for c in output_changes(before, after)] == ["changed", "removed", "added"]


def test_nested_fields_are_named_by_their_path() -> None:
    changes = output_changes({"a": {"b": 1, "c": [1]}}, {"a": {"b": 2, "c": [1]}})
    assert changes == [FieldChange(("a", "b"), 1, 2)]
    assert changes[0].field == "a.b"


def test_a_json_true_is_not_the_number_one() -> None:
    assert output_changes({"x": True}, {"x": 1}) == [FieldChange(("x",), True, 1)]
    assert output_changes({"x": 1}, {"x": 1.0}) == []  # the same JSON number


def test_outputs_that_are_not_objects_change_as_a_whole() -> None:
    assert output_changes("billing", "refund") == [FieldChange((), "billing", "refund")]
    assert output_changes(None, {"label": "x"}) == [FieldChange((), None, {"label": "x"})]
    assert output_changes({"label": "x"}, None)[0].field == "output"


def test_the_component_shows_no_change_a_rejection_or_the_changed_fields() -> None:
    same = render("{% output_diff a a %}", a={"label": "billing"})
    assert "No change" in same and "<del>" not in same
    rejected = render("{% output_diff a None rejected=True %}", a={"label": "billing"})
    assert "Rejected: no output" in rejected and "<del>" not in rejected
    edited = render("{% output_diff a b %}", a={"label": "billing"}, b={"label": "refund"})
    assert "<del>billing</del>" in edited and "<ins>refund</ins>" in edited
    assert '<span class="field">label</span>' in edited


def test_the_component_escapes_and_reveals_what_it_shows() -> None:
    html = render("{% output_diff a b %}", a={"f": "<b>x</b>"}, b={"f": "y\u202e"})
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "\u202e" not in html and "⟨U+202E⟩" in html
