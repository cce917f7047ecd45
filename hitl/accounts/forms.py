"""The form for creating an API token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms

from hitl.accounts.models import SCOPES
from hitl.accounts.services import MAX_NAME, workflows_for_tokens
from workflows.models import Workflow

EXPIRIES = [
    ("7", "in 7 days"),
    ("30", "in 30 days"),
    ("90", "in 90 days"),
    ("365", "in a year"),
    ("", "never"),
]


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=MAX_NAME, help_text="What uses it: “billing system”, “nightly export” …"
    )
    scopes = forms.MultipleChoiceField(
        choices=list(SCOPES.items()), widget=forms.CheckboxSelectMultiple
    )
    workflows: forms.ModelMultipleChoiceField[Workflow] = forms.ModelMultipleChoiceField(
        queryset=Workflow.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every workflow you have a role in, now or later.",
    )
    expires = forms.ChoiceField(choices=EXPIRIES, initial="90", required=False, label="Expires")

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["workflows"]
        assert isinstance(field, forms.ModelMultipleChoiceField)
        field.queryset = workflows_for_tokens(user=user)

    def lifetime(self) -> timedelta | None:
        days = self.cleaned_data.get("expires")
        return timedelta(days=int(days)) if days else None
