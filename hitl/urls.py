from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.http import require_GET

from hitl.review import views as review_views


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("", review_views.home, name="home"),
    path("review/", include("hitl.review.urls")),
    path("api/", include("hitl.api.urls")),
    path("accounts/tokens/", include("hitl.accounts.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/webhooks/", include("hitl.api.webhooks")),
]

# Unknown paths under /api/ get the API's error body; elsewhere, Django's page.
handler404 = "hitl.api.errors.not_found"
