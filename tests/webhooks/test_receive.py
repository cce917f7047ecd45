"""POST /api/v1/webhooks/<source>/: signed deliveries start runs; every bad one is a JSON 4xx
that leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from tests.helpers import database_state
from tests.webhooks.conftest import Sender, encode, error_of, present, sign
from workflows.models import AuditEvent, InboundMessage, Run, StepRun, WebhookSource
from workflows.secrets import new_signing_secret
from workflows.services import webhook_sources

pytestmark = pytest.mark.django_db

TICKET = {"subject": "Refund please", "body": "I was charged twice.", "priority": 2}


def test_a_signed_delivery_starts_a_run_with_the_payload_as_input(
    sender: Sender, source: WebhookSource
) -> None:
    response = sender.post(TICKET, msg_id="msg_2b7bQ1")
    assert response.status_code == 202, response.content
    answer = response.json()
    run = Run.objects.get()
    assert answer == {"run": run.pk, "status": "pending", "duplicate": False}
    assert (run.input, run.source, run.workflow_id) == (TICKET, "webhook", source.workflow_id)
    assert run.version_id == source.workflow.active_version_id
    assert StepRun.objects.get(run=run).step_id == "hold"
    message = InboundMessage.objects.get()
    assert (message.source_id, message.webhook_id, message.run_id) == (
        source.pk,
        "msg_2b7bQ1",
        run.pk,
    )
    assert message.body_sha256 == hashlib.sha256(encode(TICKET)).hexdigest()
    started = AuditEvent.objects.get(verb="run.started")
    assert (started.actor_type, started.actor_label) == ("system", "webhook:crm")
    assert started.payload["source"] == "webhook"


def test_a_retried_delivery_returns_the_same_run_and_starts_no_other(sender: Sender) -> None:
    first = sender.post(TICKET, msg_id="msg_retry")
    # A sender's retry: the same id and body, signed again with a later timestamp.
    again = sender.post(TICKET, msg_id="msg_retry", at=present() + timedelta(seconds=30))
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {**first.json(), "duplicate": True}
    assert Run.objects.count() == 1 == InboundMessage.objects.count()


def test_the_same_id_from_another_source_is_another_delivery(
    sender: Sender, source: WebhookSource, owner: Any
) -> None:
    other = webhook_sources.webhook_source_create(workflow=source.workflow, slug="erp", user=owner)
    assert sender.post(TICKET, msg_id="msg_1").status_code == 202
    assert Sender(other.secret, slug="erp").post(TICKET, msg_id="msg_1").status_code == 202
    assert Run.objects.count() == 2


def test_the_trailing_slash_is_optional(sender: Sender) -> None:
    # Without it, APPEND_SLASH would redirect a POST and lose the body (or fail under DEBUG).
    assert sender.post(TICKET, url="/api/v1/webhooks/crm").status_code == 202


def _nan(s: Sender) -> Any:
    return s.post(b'{"subject": "x", "priority": NaN}')


def _deep(s: Sender, depth: int) -> Any:
    return s.post(b'{"subject": "x", "extra": ' + b"[" * depth + b"]" * depth + b"}")


def _stale(s: Sender) -> Any:
    return s.post(TICKET, at=present() - timedelta(minutes=6))


def _future(s: Sender) -> Any:
    return s.post(TICKET, at=present() + timedelta(minutes=6))


def _tampered(s: Sender) -> Any:
    signed = sign(s.secret, encode(TICKET))
    tampered = encode({**TICKET, "priority": 0})
    return s.client.post(s.url, data=tampered, content_type="application/json", headers=signed)


def _without(header: str) -> Callable[[Sender], Any]:
    def post(s: Sender) -> Any:
        signed = sign(s.secret, encode(TICKET))
        del signed[header]
        return s.client.post(
            s.url, data=encode(TICKET), content_type="application/json", headers=signed
        )

    return post


def _header(name: str, value: str) -> Callable[[Sender], Any]:
    return lambda s: s.post(TICKET, headers={name: value})


BAD: dict[str, tuple[Callable[[Sender], Any], int, str]] = {
    "no webhook-id": (_without("webhook-id"), 400, "missing_headers"),
    "no webhook-timestamp": (_without("webhook-timestamp"), 400, "missing_headers"),
    "no webhook-signature": (_without("webhook-signature"), 400, "missing_headers"),
    "webhook-id with a space": (_header("webhook-id", "msg 1"), 400, "invalid_headers"),
    "webhook-id too long": (_header("webhook-id", "m" * 256), 400, "invalid_headers"),
    "timestamp not a number": (_header("webhook-timestamp", "soon"), 400, "invalid_headers"),
    "timestamp with a fraction": (_header("webhook-timestamp", "1.5"), 400, "invalid_headers"),
    "timestamp out of datetime range": (
        _header("webhook-timestamp", "999999999999"),
        401,
        "timestamp_out_of_tolerance",
    ),
    "signature without a version": (_header("webhook-signature", "c2ln"), 400, "invalid_headers"),
    "signature not base64": (_header("webhook-signature", "v1,@@@"), 400, "invalid_headers"),
    "signature of a v2 scheme only": (
        _header("webhook-signature", "v1a,abc="),
        400,
        "invalid_headers",
    ),
    "signed with another secret": (
        lambda s: s.post(TICKET, secret=new_signing_secret()),
        401,
        "invalid_signature",
    ),
    "body changed after signing": (_tampered, 401, "invalid_signature"),
    "signature of another webhook-id": (
        lambda s: s.post(TICKET, headers={"webhook-id": "msg_other"}),
        401,
        "invalid_signature",
    ),
    "timestamp 6 minutes old": (_stale, 401, "timestamp_out_of_tolerance"),
    "timestamp 6 minutes ahead": (_future, 401, "timestamp_out_of_tolerance"),
    "body not UTF-8": (lambda s: s.post(b'{"subject": "caf\xe9"}'), 400, "invalid_body"),
    "body UTF-16 JSON": (
        lambda s: s.post('{"subject": "x"}'.encode("utf-16")),
        400,
        "invalid_body",
    ),
    "body not JSON": (lambda s: s.post(b"subject=refund"), 400, "invalid_body"),
    "body empty": (lambda s: s.post(b"", CONTENT_LENGTH="0"), 400, "invalid_body"),
    "NaN": (_nan, 400, "invalid_body"),
    "a NUL character": (lambda s: s.post(b'{"subject": "a\\u0000b"}'), 400, "invalid_body"),
    "an unpaired surrogate": (lambda s: s.post(b'{"subject": "\\ud800"}'), 400, "invalid_body"),
    "nested 65 levels": (lambda s: _deep(s, 64), 400, "invalid_body"),
    "nested 100000 levels": (lambda s: _deep(s, 100_000), 400, "invalid_body"),
    "schema: a required field missing": (lambda s: s.post({"body": "x"}), 422, "invalid_input"),
    "schema: a wrong type": (lambda s: s.post({"subject": 5}), 422, "invalid_input"),
    "schema: not an object": (lambda s: s.post([TICKET]), 422, "invalid_input"),
    "unknown source": (lambda s: s.post(TICKET, url="/api/v1/webhooks/nobody/"), 404, "not_found"),
    "not a slug": (lambda s: s.post(TICKET, url="/api/v1/webhooks/a.b%20c/"), 404, "not_found"),
    "over the size limit": (
        lambda s: s.post({**TICKET, "body": "x" * 256 * 1024}),
        413,
        "body_too_large",
    ),
    "a Content-Length over the limit": (
        lambda s: s.post(TICKET, CONTENT_LENGTH=str(10 * 2**30)),
        413,
        "body_too_large",
    ),
    "no Content-Length": (lambda s: s.post(TICKET, CONTENT_LENGTH=""), 411, "length_required"),
    "a Content-Length not a number": (
        lambda s: s.post(TICKET, CONTENT_LENGTH="12x"),
        400,
        "invalid_headers",
    ),
    "GET": (lambda s: s.client.get(s.url), 405, "method_not_allowed"),
    "PUT": (lambda s: s.client.put(s.url, data=encode(TICKET)), 405, "method_not_allowed"),
}


@pytest.mark.parametrize("case", BAD)
def test_every_bad_request_is_a_json_4xx_and_creates_nothing(
    case: str, sender: Sender, settings: Any
) -> None:
    settings.HITL_WEBHOOK_MAX_BYTES = 256 * 1024
    send, status, code = BAD[case]
    before = database_state()
    response = send(sender)
    assert (response.status_code, error_of(response)["code"]) == (status, code), response.content
    assert database_state() == before
    # And the source still works: the refusal was about that request alone.
    assert sender.post(TICKET).status_code == 202


def test_nesting_up_to_64_levels_is_accepted(sender: Sender) -> None:
    assert _deep(sender, 63).status_code == 202  # the object, and 63 lists inside it


def test_a_schema_violation_lists_what_is_wrong(sender: Sender) -> None:
    error = error_of(sender.post({"body": 5, "priority": -1}))
    assert error["details"] == [
        "input (root): 'subject' is a required property",
        "input body: 5 is not of type 'string'",
        "input priority: -1 is less than the minimum of 0",
    ]


def test_a_disabled_source_answers_like_one_that_does_not_exist(
    sender: Sender, source: WebhookSource, owner: Any
) -> None:
    unknown = sender.post(TICKET, url="/api/v1/webhooks/nobody/")
    webhook_sources.webhook_source_update(source=source, user=owner, active=False)
    before = database_state()
    disabled = sender.post(TICKET)
    assert (disabled.status_code, disabled.content) == (404, unknown.content)
    assert database_state() == before
    webhook_sources.webhook_source_update(source=source, user=owner, active=True)
    assert sender.post(TICKET).status_code == 202


def test_an_id_reused_with_another_body_is_refused(sender: Sender) -> None:
    first = sender.post(TICKET, msg_id="msg_1")
    before = database_state()
    response = sender.post({**TICKET, "priority": 9}, msg_id="msg_1")
    assert response.status_code == 409
    assert error_of(response) == {
        "code": "webhook_id_reused",
        "message": "this webhook-id was already delivered with another body",
        "details": {"run": first.json()["run"]},
    }
    assert database_state() == before


def test_the_405_names_the_allowed_method(sender: Sender) -> None:
    assert sender.client.get(sender.url)["Allow"] == "POST"


def test_a_workflow_without_a_published_version_is_a_409(
    sender: Sender, source: WebhookSource
) -> None:
    source.workflow.active_version = None
    source.workflow.save(update_fields=["active_version"])
    before = database_state()
    response = sender.post(TICKET)
    assert (response.status_code, error_of(response)["code"]) == (409, "workflow_not_runnable")
    assert database_state() == before


def test_a_session_cookie_is_neither_needed_nor_a_substitute_for_a_signature(
    sender: Sender, owner: Any
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    body = json.dumps(TICKET).encode()
    unsigned = client.post(sender.url, data=body, content_type="application/json")
    assert (unsigned.status_code, error_of(unsigned)["code"]) == (400, "missing_headers")
    signed = client.post(
        sender.url, data=body, content_type="application/json", headers=sign(sender.secret, body)
    )
    assert signed.status_code == 202  # no CSRF token: the signature is the authentication
