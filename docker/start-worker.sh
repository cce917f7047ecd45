#!/bin/sh
# A Celery worker for the queues in CELERY_QUEUES (default: all three). Run steps and callbacks
# (default,callbacks) apart from AI steps (ai) to scale them separately: docs/operations.md.
# Prefork children, one task each at a time (prefetch 1, late acks: settings.py).
set -eu
exec celery -A hitl worker \
    --queues "${CELERY_QUEUES:-default,ai,callbacks}" \
    --pool prefork \
    --concurrency "${CELERY_CONCURRENCY:-4}" \
    --hostname "${CELERY_NODE:-worker}@%h" \
    --loglevel "${LOG_LEVEL:-INFO}" \
    "$@"
