#!/usr/bin/env bash
# Make sure a PostgreSQL for the integration tests runs, and print its URL on stdout (`make postgres`).
#
# CP_TEST_DATABASE_URL set: that server is used as it is (printed, nothing else done). Otherwise, on Debian as
# root: install postgresql when missing, start the newest installed cluster (creating one if there is none),
# wait until it accepts connections and make the role `controlplane` (password `controlplane`, CREATEDB) and
# the database `controlplane_test` it owns. Safe to run again. Anywhere else: say what to do, and fail.
# Messages go to stderr; stdout is only the URL, so `url=$(scripts/ensure-postgres.sh)` works.
set -euo pipefail

ROLE=controlplane
PASSWORD=controlplane
DATABASE=controlplane_test
WAIT_SECONDS=60

say() { printf 'ensure-postgres: %s\n' "$*" >&2; }
url() { printf 'postgresql+psycopg://%s:%s@127.0.0.1:%s/%s\n' "$ROLE" "$PASSWORD" "$1" "$DATABASE"; }

if [[ -n ${CP_TEST_DATABASE_URL:-} ]]; then
    say "using CP_TEST_DATABASE_URL as it is"
    printf '%s\n' "$CP_TEST_DATABASE_URL"
    exit 0
fi

if [[ ! -f /etc/debian_version ]] || ! command -v apt-get >/dev/null 2>&1 || [[ $EUID -ne 0 ]]; then
    say "no PostgreSQL to use. Either point the tests at one:"
    say "  export CP_TEST_DATABASE_URL=postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE"
    say "  (the user needs CREATEDB: every test module gets a database of its own)"
    say "or, on Debian, run this as root ('sudo make postgres') to install and start a local one."
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || ! command -v pg_ctlcluster >/dev/null; then
    say "installing postgresql"
    apt-get install -y --no-install-recommends postgresql >&2 \
        || { apt-get update >&2 && apt-get install -y --no-install-recommends postgresql >&2; }
fi

as_postgres() { runuser -u postgres -- "$@"; }

# the newest installed major version, and its cluster (pg_lsclusters: "15 main 5432 down postgres ...")
version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -n 1)
[[ -n $version ]] || { say "postgresql is installed but /usr/lib/postgresql holds no version"; exit 1; }
cluster=$(pg_lsclusters -h | awk -v v="$version" '$1 == v { print $2; exit }')
if [[ -z $cluster ]]; then
    say "creating cluster $version/main"
    pg_createcluster "$version" main >&2
    cluster=main
fi
read -r port status < <(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { print $3, $4 }')
if [[ $status != online* ]]; then
    say "starting cluster $version/$cluster on port $port"
    pg_ctlcluster "$version" "$cluster" start >&2
fi

for ((i = 0; ; i++)); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    if ((i >= WAIT_SECONDS)); then
        say "PostgreSQL $version/$cluster did not accept connections within ${WAIT_SECONDS}s; its log:"
        tail -n 30 "/var/log/postgresql/postgresql-$version-$cluster.log" >&2 || true
        exit 1
    fi
    sleep 1
done

psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres "$@"; }
psql_admin -v role="$ROLE" -v password="$PASSWORD" >&2 <<'SQL'
SELECT format('CREATE ROLE %I', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'password') \gexec
SQL
psql_admin -v role="$ROLE" -v db="$DATABASE" >&2 <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL

# the role must be able to log in over TCP with its password (Debian's pg_hba.conf allows it by default)
if ! PGPASSWORD=$PASSWORD psql -X -q -h 127.0.0.1 -p "$port" -U "$ROLE" -d "$DATABASE" -c 'SELECT 1' >/dev/null; then
    say "role $ROLE cannot log in to 127.0.0.1:$port with its password: check pg_hba.conf"
    exit 1
fi
say "PostgreSQL $version/$cluster is ready"
url "$port"
