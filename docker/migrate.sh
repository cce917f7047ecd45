#!/bin/sh
# One-shot, before web, workers and beat start: refuse a configuration that is not fit for
# production, then migrate. With DATABASE_OWNER_URL set, `migrate` runs as the owner and grants
# DATABASE_URL's role what the application needs (docs/architecture.md, 'Database roles').
set -eu
python manage.py check --deploy --fail-level "${HITL_DEPLOY_CHECK_LEVEL:-WARNING}"
exec python manage.py migrate --noinput
