#!/bin/sh
# First start of the PostgreSQL container only (docker-entrypoint-initdb.d): the two roles of
# docs/architecture.md, 'Database roles', and the database, owned by the owner. `migrate`
# (as hitl_owner) creates the tables and grants hitl_app what the application needs.
# Passwords are passed as psql variables and quoted by psql (:'name'), never spliced in.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v owner_password="$HITL_DB_OWNER_PASSWORD" -v app_password="$HITL_DB_APP_PASSWORD" <<'SQL'
CREATE ROLE hitl_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE hitl_app LOGIN PASSWORD :'app_password';
CREATE DATABASE hitl OWNER hitl_owner;
REVOKE ALL ON DATABASE hitl FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE hitl TO hitl_app;
\connect hitl
-- Only the owner creates objects in public; the application uses what migrate made.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO hitl_app;
SQL
