#!/bin/sh
# The test command (README, .ci/run): installs the servers and the browser the tests start
# when they are missing (Debian packages; needs root), starts PostgreSQL and a NATS server
# with JetStream when they are not running, checks formatting and lints, then runs the
# whole test suite.
set -eu
cd "$(dirname "$0")"

missing=""
command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"
command -v prometheus-alertmanager >/dev/null 2>&1 || missing="$missing prometheus-alertmanager"
/usr/bin/python3 -c "import aiosmtpd" >/dev/null 2>&1 || missing="$missing python3-aiosmtpd"
# The console's browser tests (tests/console.rs) drive a headless Chromium through WebDriver.
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
if [ -n "$missing" ]; then
    echo "test.sh: installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

# The store tests (tests/store.rs) need a PostgreSQL where they may create databases:
# VIGIL_TEST_PG names it, by default postgres://postgres@127.0.0.1:5432/test (the
# developers' machines start one with trust authentication). When that does not answer,
# install PostgreSQL if missing, start its clusters that are down, and give the tests a
# role of their own with a password (Debian's default asks for one over TCP); existing
# roles, databases and pg_hba.conf are left alone. Running it again changes nothing.
pg_ok() { psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1; }
if [ -z "${VIGIL_TEST_PG:-}" ] && ! pg_ok postgres://postgres@127.0.0.1:5432/test; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "test.sh: installing postgresql"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    if [ -z "$(pg_lsclusters -h)" ]; then
        version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
        echo "test.sh: creating the PostgreSQL $version cluster main"
        pg_createcluster "$version" main >/dev/null
    fi
    # The package starts its cluster, except where services do not start (containers).
    pg_lsclusters -h | while read -r version name port status rest; do
        case "$status" in
            online*) ;;
            *) echo "test.sh: starting PostgreSQL $version/$name (port $port)"; pg_ctlcluster "$version" "$name" start ;;
        esac
    done
    if ! pg_ok postgres://postgres@127.0.0.1:5432/test; then
        as_postgres() { (cd / && su postgres -s /bin/sh -c "psql -p 5432 -Atqc \"$1\""); }
        if [ "$(as_postgres "SELECT 1 FROM pg_roles WHERE rolname = 'vigil_test'")" != 1 ]; then
            as_postgres "CREATE ROLE vigil_test LOGIN CREATEDB PASSWORD 'vigil_test'" >/dev/null
        fi
        VIGIL_TEST_PG=postgres://vigil_test:vigil_test@127.0.0.1:5432/postgres
        export VIGIL_TEST_PG
        if ! pg_ok "$VIGIL_TEST_PG"; then
            echo "test.sh: PostgreSQL on 127.0.0.1:5432 refuses the role vigil_test; set VIGIL_TEST_PG to a URL whose role may CREATE DATABASE" >&2
            exit 1
        fi
    fi
fi
# tests/cluster.rs also runs a PostgreSQL server of its own (to restart it mid-test): it
# needs the server programs here even when the PostgreSQL above is elsewhere.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "test.sh: installing postgresql (its server programs)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

# The cluster tests (tests/cluster.rs) need a NATS server with JetStream: VIGIL_TEST_NATS
# names it, by default nats://127.0.0.1:4222 (the developers' machines start one). When
# nothing listens there, install nats-server if missing and start one with JetStream in
# the background (its data under a temporary directory); one already running is left
# alone.
nats_ok() { bash -c '(exec 3<>/dev/tcp/127.0.0.1/4222)' >/dev/null 2>&1; }
if [ -z "${VIGIL_TEST_NATS:-}" ] && ! nats_ok; then
    if ! command -v nats-server >/dev/null 2>&1; then
        echo "test.sh: installing nats-server"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    fi
    # The package may start its own service (with JetStream, as Debian configures it).
    if ! nats_ok; then
        nats_dir=$(mktemp -d /tmp/vigil-nats.XXXXXX)
        echo "test.sh: starting nats-server with JetStream on 127.0.0.1:4222 (data in $nats_dir)"
        nohup nats-server -js -a 127.0.0.1 -p 4222 -sd "$nats_dir" >"$nats_dir/nats.log" 2>&1 &
        tries=0
        until nats_ok; do
            tries=$((tries + 1))
            if [ "$tries" -gt 100 ]; then
                echo "test.sh: nats-server did not start; its log:" >&2
                cat "$nats_dir/nats.log" >&2
                exit 1
            fi
            sleep 0.1
        done
    fi
fi

# House rules first: formatting and lints (warnings are errors).
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --no-fail-fast "$@"
