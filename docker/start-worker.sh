#!/bin/sh
# A Celery worker for the queues in CELERY_QUEUES (default: all three). Run steps and callbacks
# (default,callbacks) apart from AI steps (ai) to scale them separately: docs/operations.md.
# Prefork children, one task each at a time (prefetch 1, late acks: settings.py).
set -eu
# Process counters for /metrics (docs/operations.md, "Monitoring"): this container's processes
# write them here; emptied at start so a previous container's processes do not count.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    rm -rf "${PROMETHEUS_MULTIPROC_DIR}"
    mkdir -p "${PROMETHEUS_MULTIPROC_DIR}"
fi
exec celery -A hitl worker \
    --queues "${CELERY_QUEUES:-default,ai,callbacks}" \
    --pool prefork \
    --concurrency "${CELERY_CONCURRENCY:-4}" \
    --hostname "${CELERY_NODE:-worker}@%h" \
    --loglevel "${LOG_LEVEL:-INFO}" \
    "$@"
