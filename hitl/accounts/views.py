"""The API tokens page: a user creates and revokes their own tokens. Thin views over
`hitl.accounts.services`; a new token is shown once, in the answer to the POST that
created it, and never stored in clear anywhere (not in a session, not in a URL)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from hitl.accounts import services
from hitl.accounts.forms import TokenForm
from hitl.accounts.models import SCOPES
from workflows.errors import Conflict, InvalidInput, NotAllowed


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None, user=request.user)
    created = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            lifetime = form.lifetime()
            chosen = list(form.cleaned_data["workflows"])
            try:
                token, secret = services.api_token_create(
                    user=request.user,
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                    workflows=chosen or None,
                    expires_at=timezone.now() + lifetime if lifetime else None,
                )
            except InvalidInput as exc:
                form.add_error(None, str(exc))
                status = 400
            else:
                created = {"token": token, "secret": secret}
                form = TokenForm(user=request.user)
        else:
            status = 400
    context = {
        "form": form,
        "created": created,
        "tokens": services.api_tokens_of(user=request.user),
        "scopes": SCOPES,
        "now": timezone.now(),
    }
    return render(request, "accounts/tokens.html", context, status=status)


@require_POST
@login_required
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = services.api_tokens_of(user=request.user).filter(pk=pk).first()
    if token is None:
        # Another user's token and a token that does not exist look the same.
        raise Http404("no such token")
    try:
        services.api_token_revoke(token=token, user=request.user)
    except (Conflict, NotAllowed) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Token {token.prefix}… ({token.name}) is revoked.")
    return redirect("accounts:tokens")
