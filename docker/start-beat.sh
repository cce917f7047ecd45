#!/bin/sh
# Celery beat: sends the sweeps and audit sealing on schedule. Run exactly one. Its schedule
# file is only a cache of when each entry last ran (all of them are intervals), so /tmp will do.
set -eu
exec celery -A hitl beat \
    --schedule /tmp/celerybeat-schedule \
    --pidfile= \
    --loglevel "${LOG_LEVEL:-INFO}" \
    "$@"
