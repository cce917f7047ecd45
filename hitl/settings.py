"""One settings module for every environment: production differs only by environment variables.

See README.md ("Settings") for the full list.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return default if value in (None, "") else float(value)


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_int(name: str, default: int, minimum: int) -> int:
    """A whole number of at least `minimum`; anything else stops the process at start."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {raw!r}")
    return value


DEBUG = env_bool("DEBUG", False)
HITL_DEMO = env_bool("HITL_DEMO", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    # Only a DEBUG process may fall back to a throwaway key; it is never used in production.
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105


def parse_audit_keys(keys: str, key: str, debug: bool) -> list[tuple[str, str]]:
    """The audit chain's keys as (id, secret), the current one first.

    `keys` is HITL_AUDIT_KEYS (`id:secret,...`); `key` is HITL_AUDIT_KEY, one secret whose id
    is derived from it (a check value, so a new secret gets a new id). Never SECRET_KEY: the
    audit key proves the chain was written by the sealer, so it must not be a value every web
    process needs for sessions.
    """
    if keys.strip():
        pairs = [item.strip().partition(":") for item in keys.split(",") if item.strip()]
        parsed = [(ident.strip(), secret.strip()) for ident, _, secret in pairs]
    elif key.strip():
        check = hmac.new(key.strip().encode(), b"hitl.audit.key_id", hashlib.sha256).hexdigest()
        parsed = [(f"k{check[:8]}", key.strip())]
    elif debug:
        # Only a DEBUG process may fall back to a throwaway key, as with SECRET_KEY.
        return [("insecure-dev", "insecure-development-audit-key-do-not-use")]
    else:
        raise ImproperlyConfigured(
            "HITL_AUDIT_KEYS (or HITL_AUDIT_KEY) must be set when DEBUG is off: the audit "
            "chain's HMAC key, not SECRET_KEY."
        )
    seen: set[str] = set()
    for ident, secret in parsed:
        if not ident or len(ident) > 32 or not ident.replace("-", "").replace("_", "").isalnum():
            raise ImproperlyConfigured(
                f"HITL_AUDIT_KEYS: key id {ident!r} must be 1-32 letters, digits, - or _"
            )
        if ident in seen:
            raise ImproperlyConfigured(f"HITL_AUDIT_KEYS: key id {ident!r} is listed twice")
        if len(secret) < 16:
            raise ImproperlyConfigured(
                f"HITL_AUDIT_KEYS: the secret of key {ident!r} is shorter than 16 characters"
            )
        seen.add(ident)
    return parsed


# The HMAC keys of the audit chain and its checkpoints (docs/architecture.md, "Audit trail").
HITL_AUDIT_KEYS = parse_audit_keys(
    os.environ.get("HITL_AUDIT_KEYS", ""), os.environ.get("HITL_AUDIT_KEY", ""), DEBUG
)


ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # WhiteNoise serves static files under runserver too, as in production.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "csp",
    "django_htmx",
    "template_partials",
    # For its templates and static files: the API docs page is served locally, no CDN.
    "ninja",
    "workflows",
    "hitl.accounts",
    "hitl.api",
    "hitl.demo",
    "hitl.review",
]

MIDDLEWARE = [
    # First: every later middleware's and view's log lines carry the request's id.
    "hitl.requestid.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files, answered before sessions or the database are touched.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a refused login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "hitl.urls"
WSGI_APPLICATION = "hitl.wsgi.application"
ASGI_APPLICATION = "hitl.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

# PostgreSQL is the system of record, everywhere: there is no SQLite path to keep in step.
_database_url = os.environ.get("DATABASE_URL", "")
if not _database_url:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Use `make run` / `make test`, which start a private "
        "PostgreSQL when none is configured, or point DATABASE_URL at your server."
    )
DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
# Two roles (workflows/dbroles.py): DATABASE_URL is the role the application runs as, and
# DATABASE_OWNER_URL, if set, the role that owns the tables, which `migrate` runs as. The
# tests invert this: DATABASE_URL is the owner (the test runner creates and flushes the
# database) and DATABASE_RUNTIME_URL the application's role, for the tests that attack it.
# (Each variable is named where it is read: tests/test_docker.py finds them all that way.)
_role_urls = {
    "owner": os.environ.get("DATABASE_OWNER_URL"),
    "runtime": os.environ.get("DATABASE_RUNTIME_URL"),
}
for _alias, _role_url in _role_urls.items():
    if _role_url:
        DATABASES[_alias] = dj_database_url.parse(_role_url, conn_max_age=0)
for _alias, _db in DATABASES.items():
    if _db["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(f"hitl needs PostgreSQL; the {_alias} database is not.")
# psycopg prepares a statement after this many runs on a connection. Only the engine's two
# hot statements (claim and record) bind server-side and can be prepared; Django's own
# queries never are. Set it empty behind a transaction-mode pooler older than PgBouncer 1.21.
_prepare_threshold = os.environ.get("HITL_DB_PREPARE_THRESHOLD", "5")
if _prepare_threshold:
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = int(_prepare_threshold)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Without DEBUG, `collectstatic` (the image runs it) names each file by its content's hash and
# writes gzipped copies; WhiteNoise serves those with a far-future, immutable Cache-Control,
# and every other static URL with a short one. With DEBUG, files are served as they are.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/review/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Login throttling (django-axes) -------------------------------------------------------
# Failed logins (the desk's and the admin's) are counted per username and client address
# together: spraying one username from many addresses, or many usernames from one address,
# locks out only the pairs tried, never every reviewer. API tokens never log in, so they are
# not counted. hitl/accounts/throttle.py has the address and the lockout page (429).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = env_int("HITL_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("HITL_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
# A login refused during the lockout does not extend it: the time the page gives holds.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A successful login starts the count again.
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "hitl.accounts.throttle.client_ip"
AXES_LOCKOUT_CALLABLE = "hitl.accounts.throttle.lockout_response"
# How many reverse proxies in front append to X-Forwarded-For; 0: none, and the header is
# ignored (anyone can send it). Behind N, the client is the Nth address from its right.
HITL_TRUSTED_PROXY_COUNT = env_int("HITL_TRUSTED_PROXY_COUNT", 0, minimum=0)

# --- Content Security Policy (django-csp) ----------------------------------------------------
# Scripts and styles come only from our own static files: no inline script, style element or
# style attribute, no eval. style-src and img-src are spelled out so that a view relaxing one
# (only the API docs: hitl/api/urls.py) adds to 'self' instead of replacing it. The admin runs
# under this policy as it is (docs/operations.md, "Content Security Policy").
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

SESSION_COOKIE_HTTPONLY = True
# No script reads the CSRF cookie: the desk's htmx sends the token the template renders
# (hx-headers in base.html), and forms carry {% csrf_token %}.
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
# HTTPS, on by default without DEBUG (`manage.py check --deploy` passes with the defaults).
# Behind a proxy that terminates TLS, name the header it sets (HTTP_X_FORWARDED_PROTO): then
# a request it forwarded with "https" counts as secure, and nothing loops on the redirect.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Health probes and metric scrapes come over plain HTTP from inside the network: a redirect
# would fail them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
if _proxy_header := os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip():
    if not _proxy_header.startswith("HTTP_"):
        raise ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER names a request header as Django sees it, such as "
            f"HTTP_X_FORWARDED_PROTO, not {_proxy_header!r}"
        )
    SECURE_PROXY_SSL_HEADER = (_proxy_header, "https")
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
# Preloading commits the whole registrable domain to HTTPS in browsers for good, which is the
# domain owner's decision, not a default: off, and its deploy warning silenced unless set.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "hitl@localhost")

# `json`: one JSON object per line with request_id, run_id, step_id and task_id where they
# apply (workflows/logs.py, docs/operations.md); `text`: the plain line. JSON unless DEBUG.
HITL_LOG_FORMAT = os.environ.get("HITL_LOG_FORMAT", "text" if DEBUG else "json").strip().lower()
if HITL_LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"HITL_LOG_FORMAT must be text or json, not {HITL_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "workflows.logs.ContextFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "workflows.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": HITL_LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Celery -------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None  # Results live in PostgreSQL, on the StepRun.
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
# Without this, acks_late loses a task when only the pool's child process is killed.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup otherwise closes the database connection around every task: a new
# connection per step cost 3-8 ms (bench.engine). hitl/celery.py closes broken or old ones.
CELERY_DB_REUSE_MAX = 1000
# The visibility timeout only matters for messages a dead worker held; the sweeper
# re-enqueues their steps long before it, once the step's lease has expired.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}

# --- Health (/readyz, hitl/health.py) ----------------------------------------------------------
# Seconds a readiness probe waits for Redis; workers record a heartbeat this often, and count
# as gone after the window without one; beat counts as stopped when it has not sent the step
# sweep (every HITL_SWEEP_INTERVAL) within its window.
HITL_HEALTH_TIMEOUT = env_float("HITL_HEALTH_TIMEOUT", 1.0)
HITL_HEALTH_HEARTBEAT_SECONDS = env_float("HITL_HEALTH_HEARTBEAT_SECONDS", 10.0)
HITL_HEALTH_WORKER_STALE_SECONDS = env_float(
    "HITL_HEALTH_WORKER_STALE_SECONDS", 3 * HITL_HEALTH_HEARTBEAT_SECONDS
)
HITL_HEALTH_BEAT_STALE_SECONDS = env_float(
    "HITL_HEALTH_BEAT_STALE_SECONDS", 4 * env_float("HITL_SWEEP_INTERVAL", 15.0)
)

# --- Monitoring (/metrics, alerts, logs: docs/operations.md) -------------------------------
# The window of the metrics that look back (automation and override rates, time to decision,
# model use per run, finished runs and deliveries): what finished within it, before a scrape.
HITL_METRICS_WINDOW = timedelta(seconds=env_float("HITL_METRICS_WINDOW_SECONDS", 3600.0))
# An alert raised again within this long of its last email is counted and logged, not mailed.
HITL_ALERT_DEDUP = timedelta(seconds=env_float("HITL_ALERT_DEDUP_SECONDS", 3600.0))
# Who may read /metrics: clients in these networks (addresses or CIDRs; REMOTE_ADDR, so the
# proxy's address behind one) and, when a token is set, only with `Authorization: Bearer`.
# Loopback only by default; empty means any address (then set a token).
HITL_METRICS_ALLOW = env_list("HITL_METRICS_ALLOW", "127.0.0.1/32,::1/128")
HITL_METRICS_TOKEN = os.environ.get("HITL_METRICS_TOKEN", "")
# A worker serves its own process counters on this port (unset: none), bound to this address.
# The port has no token: keep it on the private network Prometheus scrapes from.
HITL_WORKER_METRICS_PORT = int(os.environ.get("HITL_WORKER_METRICS_PORT") or 0) or None
HITL_WORKER_METRICS_ADDR = os.environ.get("HITL_WORKER_METRICS_ADDR", "127.0.0.1")

# --- Engine -------------------------------------------------------------------------------
# A step's lease is its soft time limit plus a margin: a worker that still holds a live
# lease is presumed to be working on the step.
HITL_STEP_SOFT_TIME_LIMIT = env_float("HITL_STEP_SOFT_TIME_LIMIT", 300.0)
HITL_STEP_HARD_TIME_LIMIT = env_float("HITL_STEP_HARD_TIME_LIMIT", HITL_STEP_SOFT_TIME_LIMIT + 30)
HITL_STEP_LEASE = timedelta(
    seconds=env_float("HITL_STEP_LEASE_SECONDS", HITL_STEP_SOFT_TIME_LIMIT + 60)
)
HITL_STEP_MAX_ATTEMPTS = int(os.environ.get("HITL_STEP_MAX_ATTEMPTS", "5"))
HITL_RETRY_BACKOFF_BASE = env_float("HITL_RETRY_BACKOFF_BASE", 2.0)
HITL_RETRY_BACKOFF_MAX = env_float("HITL_RETRY_BACKOFF_MAX", 600.0)
HITL_SWEEP_INTERVAL = env_float("HITL_SWEEP_INTERVAL", 15.0)
# A READY step already enqueued is only enqueued again once it has sat this long unclaimed:
# the first message may simply be waiting in a busy queue.
HITL_REENQUEUE_AFTER = timedelta(
    seconds=env_float("HITL_REENQUEUE_AFTER", 2 * env_float("HITL_SWEEP_INTERVAL", 15.0))
)
HITL_AUDIT_SEAL_INTERVAL = env_float("HITL_AUDIT_SEAL_INTERVAL", 5.0)
# Where the sealer appends its signed checkpoints (one JSON line per seal); unset: logged only
# (logger `hitl.audit.checkpoint`). `make run` keeps them in var/.
HITL_AUDIT_CHECKPOINT_FILE = os.environ.get("HITL_AUDIT_CHECKPOINT_FILE") or None
# The scheduled verification (incremental, from the last verified event), in seconds.
HITL_AUDIT_VERIFY_INTERVAL = env_float("HITL_AUDIT_VERIFY_INTERVAL", 24 * 3600.0)
# An event is backdated if it was created more than this before the seal that preceded it: an
# honest event can only be that late by sitting in a transaction that long before committing.
HITL_AUDIT_BACKDATE_SLACK = timedelta(seconds=env_float("HITL_AUDIT_BACKDATE_SLACK_SECONDS", 300.0))
# Gates and review tasks. The audit-sample key makes the draw deterministic per run and step;
# derived from SECRET_KEY unless pinned (rotating SECRET_KEY would change re-executed draws).
HITL_GATE_AUDIT_SECRET = (
    os.environ.get("HITL_GATE_AUDIT_SECRET")
    or hmac.new(SECRET_KEY.encode(), b"hitl.gate.audit_sample", hashlib.sha256).hexdigest()
)
# Signing secrets of webhook sources and callback endpoints cannot be hashed (they are needed
# to sign and verify), so they are encrypted at rest with these Fernet keys: the first
# encrypts, all decrypt (rotation: put the new key first, re-encrypt, then drop the old one).
# Derived from SECRET_KEY unless pinned; pin it so stored secrets survive a SECRET_KEY change.
HITL_SECRETS_KEYS = env_list("HITL_SECRETS_KEYS") or [
    base64.urlsafe_b64encode(
        hmac.new(SECRET_KEY.encode(), b"hitl.secrets", hashlib.sha256).digest()
    ).decode()
]
# A reviewer's claim is a lease, renewed while they work; the review sweeper frees lapsed ones.
HITL_REVIEW_CLAIM = timedelta(seconds=env_float("HITL_REVIEW_CLAIM_SECONDS", 900.0))
# Renewals never keep one claim past this: then the task goes back to the queue.
HITL_REVIEW_MAX_CLAIM_TIME = timedelta(seconds=env_float("HITL_REVIEW_MAX_CLAIM_SECONDS", 7200.0))
# How many live claims one reviewer may hold at once: nobody can take the whole queue.
HITL_REVIEW_MAX_CLAIMS = int(os.environ.get("HITL_REVIEW_MAX_CLAIMS", "5"))
# The SLA warning falls due once this share of a task's SLA has passed.
HITL_SLA_WARNING_FRACTION = env_float("HITL_SLA_WARNING_FRACTION", 0.75)
# Deep links in notification emails start with this; `check --deploy` wants it https
# (workflows/checks.py): the default is only right for `make run`.
HITL_BASE_URL = os.environ.get("HITL_BASE_URL", "http://127.0.0.1:8000")
# Where a review task is shown, for links the engine sends (the desk serves this path).
HITL_REVIEW_TASK_PATH = "/review/tasks/{id}/"
# --- Outbound callbacks and chat notifications ----------------------------------------------
# Seconds to wait before each retry of a delivery: the first attempt is immediate, then one
# retry per entry (up to 20% jitter added), about a day in all; then it fails and alerts.
HITL_DELIVERY_RETRY_SCHEDULE = [
    float(item)
    for item in env_list(
        "HITL_DELIVERY_RETRY_SCHEDULE", "5,30,120,600,1800,3600,7200,14400,28800,28800"
    )
]
# A receiver's Retry-After (seconds or an HTTP date) is honoured up to this many seconds.
HITL_DELIVERY_RETRY_AFTER_MAX = env_float("HITL_DELIVERY_RETRY_AFTER_MAX", 6 * 3600.0)
# Outbound HTTP (callbacks, chat): per-operation timeouts, and how much of an answer is read.
HITL_OUTBOUND_CONNECT_TIMEOUT = env_float("HITL_OUTBOUND_CONNECT_TIMEOUT", 5.0)
HITL_OUTBOUND_READ_TIMEOUT = env_float("HITL_OUTBOUND_READ_TIMEOUT", 15.0)
HITL_OUTBOUND_MAX_RESPONSE_BYTES = int(os.environ.get("HITL_OUTBOUND_MAX_RESPONSE_BYTES", "4096"))
# Hosts or CIDRs outbound requests may reach although they are loopback, private, link-local
# or otherwise not public (on-premise receivers, tests); plain http is allowed only to them.
HITL_OUTBOUND_ALLOW = env_list("HITL_OUTBOUND_ALLOW")
# A delivery's claim is a lease, like a step's; the send task's time limits are derived from
# it (80% soft, 90% hard), so a worker never sends past its lease. Keep it above the timeouts.
HITL_DELIVERY_LEASE = timedelta(
    seconds=env_float(
        "HITL_DELIVERY_LEASE_SECONDS",
        2 * (HITL_OUTBOUND_CONNECT_TIMEOUT + HITL_OUTBOUND_READ_TIMEOUT) + 20,
    )
)
# After a secret rotation the previous secret keeps signing (a second signature) this long.
HITL_ENDPOINT_SECRET_GRACE = timedelta(
    seconds=env_float("HITL_ENDPOINT_SECRET_GRACE_SECONDS", 24 * 3600.0)
)
# New chat endpoints post new review tasks of at least this priority (per endpoint after).
HITL_CHAT_MIN_PRIORITY = int(os.environ.get("HITL_CHAT_MIN_PRIORITY", "1"))
# --- REST API -------------------------------------------------------------------------------
# `GET /api/v1/runs/{id}?wait=N` holds a request thread while it polls: at most this many
# waits at once per process (more get a 429 with Retry-After), polling every this often.
HITL_API_MAX_WAITS = int(os.environ.get("HITL_API_MAX_WAITS", "20"))
HITL_API_WAIT_POLL_SECONDS = env_float("HITL_API_WAIT_POLL_SECONDS", 0.5)
# How long the answer to a POST sent with an Idempotency-Key is kept and replayed.
HITL_API_IDEMPOTENCY_TTL = timedelta(seconds=env_float("HITL_API_IDEMPOTENCY_SECONDS", 24 * 3600.0))
# --- Definitions and expressions: limits on untrusted text ----------------------------------
# A definition is refused (with the setting's name in the message) above any of these, before
# it can cost the server unbounded time or memory. Nodes count every key and value once per
# use of a YAML alias; depth counts nested mappings and lists.
HITL_DEFINITION_MAX_BYTES = int(os.environ.get("HITL_DEFINITION_MAX_BYTES", str(256 * 1024)))
HITL_DEFINITION_MAX_STEPS = int(os.environ.get("HITL_DEFINITION_MAX_STEPS", "500"))
HITL_DEFINITION_MAX_DEPTH = int(os.environ.get("HITL_DEFINITION_MAX_DEPTH", "20"))
HITL_DEFINITION_MAX_NODES = int(os.environ.get("HITL_DEFINITION_MAX_NODES", "100000"))
# CEL expressions: length and nesting are checked when a definition is validated; the steps
# (nodes evaluated, plus the size of every concatenation and of the result) on every
# evaluation. Realistic expressions stay far below these.
HITL_CEL_MAX_LENGTH = int(os.environ.get("HITL_CEL_MAX_LENGTH", "4096"))
HITL_CEL_MAX_DEPTH = int(os.environ.get("HITL_CEL_MAX_DEPTH", "50"))
HITL_CEL_MAX_STEPS = int(os.environ.get("HITL_CEL_MAX_STEPS", "100000"))
# --- AI steps -------------------------------------------------------------------------------
# Seconds a provider call may take; providers never retry on their own (max_retries=0).
HITL_AI_TIMEOUT = env_float("HITL_AI_TIMEOUT", 60.0)
# Extra keyword arguments per provider for init_chat_model, e.g. {"openai": {"base_url": ...}}.
HITL_AI_PROVIDER_OPTIONS: dict[str, dict[str, object]] = {}
if os.environ.get("HITL_OPENAI_BASE_URL"):
    HITL_AI_PROVIDER_OPTIONS["openai"] = {"base_url": os.environ["HITL_OPENAI_BASE_URL"]}
# USD per million tokens, by model spec. Unknown models cost 0 (and say so in the docs).
HITL_AI_PRICES: dict[str, dict[str, float]] = {
    "openai:gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "openai:gpt-4o": {"input": 2.50, "output": 10.00},
    "openai:gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "anthropic:claude-3-5-haiku-latest": {"input": 0.80, "output": 4.00},
    "anthropic:claude-sonnet-4-0": {"input": 3.00, "output": 15.00},
}
# Calls per minute per provider, shared by every worker through Redis.
HITL_AI_RATE_LIMITS: dict[str, int] = {
    name: int(value)
    for name, _, value in (
        item.partition("=") for item in env_list("HITL_AI_RATE_LIMITS", "openai=500,anthropic=50")
    )
    if value
}

# --- Datasets (manage.py dataset export) ---------------------------------------------------


def eval_split_rate() -> float:
    """`HITL_EVAL_SPLIT_RATE`: the held-out share of reviewed items (workflows/splits.py).

    Checked here so that a typo stops the process at start instead of silently moving items
    between train and eval; lowering it leaks evaluation items into training (docs/datasets.md).
    """
    return rate_setting("HITL_EVAL_SPLIT_RATE", 0.10)


def rate_setting(name: str, default: float) -> float:
    """A share between 0 and 1 from the environment; a typo stops the process at start."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        rate = float(raw)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a number between 0 and 1, not {raw!r}"
        ) from None
    if not 0 <= rate <= 1:
        raise ImproperlyConfigured(f"{name} must be between 0 and 1, not {raw!r}")
    return rate


HITL_EVAL_SPLIT_RATE = eval_split_rate()
# The lowest audit_rate a gate that auto-approves may declare: without an audit sample nobody
# sees its errors and calibration has nothing above the threshold. Checked at import.
HITL_GATE_MIN_AUDIT_RATE = rate_setting("HITL_GATE_MIN_AUDIT_RATE", 0.01)
# The smallest move down a gate in `calibrate: {mode: auto}` makes (tightening is never held
# back): every threshold once in force splits the calibration data (workflows/calibration.py).
HITL_CALIBRATE_MIN_STEP = rate_setting("HITL_CALIBRATE_MIN_STEP", 0.02)

# --- The learning loop (workflows/services/learning.py) -------------------------------------
# Retrain a local model after this many new final decisions in the workflows using it; 0 = off.
HITL_LOCAL_MODEL_RETRAIN_EVERY = int(env_float("HITL_LOCAL_MODEL_RETRAIN_EVERY", 50))
# How much worse a candidate's expected calibration error may be and still be promoted.
HITL_LOCAL_MODEL_ECE_TOLERANCE = env_float("HITL_LOCAL_MODEL_ECE_TOLERANCE", 0.02)

# --- Inbound webhooks (POST /api/v1/webhooks/<source>/) -----------------------------------------
# The largest body accepted; a larger Content-Length is refused (413) before anything is read.
HITL_WEBHOOK_MAX_BYTES = int(os.environ.get("HITL_WEBHOOK_MAX_BYTES", str(256 * 1024)))
# Verified deliveries per minute a new source accepts before 429 (each source has its own).
HITL_WEBHOOK_RATE_LIMIT = int(os.environ.get("HITL_WEBHOOK_RATE_LIMIT", "600"))

HITL_STEP_KINDS = [
    "workflows.steps.transform",
    "workflows.steps.wait",
    "workflows.steps.ai",
    "workflows.steps.gate",
    *env_list("HITL_EXTRA_STEP_KINDS"),
]
