from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from hitl import health
from hitl.metrics import metrics_view
from hitl.review import views as review_views

urlpatterns = [
    path("", review_views.home, name="home"),
    path("review/", include("hitl.review.urls")),
    path("api/", include("hitl.api.urls")),
    path("accounts/tokens/", include("hitl.accounts.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # Liveness and readiness (hitl/health.py): no login, and no redirect to HTTPS (settings).
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Prometheus (hitl/metrics.py): allow-listed networks and an optional bearer token.
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/webhooks/", include("hitl.api.webhooks")),
]

# Unknown paths under /api/ get the API's error body; elsewhere, Django's page.
handler404 = "hitl.api.errors.not_found"
