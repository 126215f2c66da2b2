#!/bin/sh
# Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d),
# connected to POSTGRES_DB: the owner and app roles and the owner's schema, as
# docs/postgresql.md sets them up by hand.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v owner_password="$IMPBOT_OWNER_PASSWORD" -v app_password="$IMPBOT_APP_PASSWORD" <<'SQL'
CREATE ROLE impbot_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE impbot_app LOGIN PASSWORD :'app_password';
CREATE SCHEMA impbot AUTHORIZATION impbot_owner;
ALTER ROLE impbot_owner SET search_path = impbot;
ALTER ROLE impbot_app SET search_path = impbot;
SQL
