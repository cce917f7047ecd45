#!/bin/sh
# The web process: gunicorn with threaded workers (gthread). An API wait
# (GET /api/v1/runs/{id}?wait=N) holds a thread for up to 30 s, and each process serves at most
# HITL_API_MAX_WAITS (20) of them, so the default 32 threads leave 12 for everything else.
# Each thread keeps its own database connection (up to 60 s idle): budget
# WEB_CONCURRENCY x GUNICORN_THREADS connections per web container.
# No gunicorn access log: the app logs one line per request (`hitl.request`) with its
# request id, in HITL_LOG_FORMAT.
set -eu
# Process counters for /metrics (docs/operations.md, "Monitoring"): this container's processes
# write them here; emptied at start so a previous container's processes do not count.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    rm -rf "${PROMETHEUS_MULTIPROC_DIR}"
    mkdir -p "${PROMETHEUS_MULTIPROC_DIR}"
fi
exec gunicorn hitl.wsgi:application \
    --bind "0.0.0.0:${PORT:-8000}" \
    --worker-class gthread \
    --workers "${WEB_CONCURRENCY:-2}" \
    --threads "${GUNICORN_THREADS:-32}" \
    --timeout "${GUNICORN_TIMEOUT:-60}" \
    --graceful-timeout 30 \
    --max-requests 5000 --max-requests-jitter 500 \
    --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
    --error-logfile - \
    "$@"
