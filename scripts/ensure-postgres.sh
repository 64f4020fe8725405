#!/usr/bin/env bash
# Make Debian's PostgreSQL server binaries (initdb, pg_ctl) available for nflab's team tests (tests/team).
# Installs the `postgresql` package with apt-get only when initdb is missing and we are root. Never fails the
# build: without apt (or without root, or offline) it prints a note and the team tests skip themselves.
set -u

have_initdb() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1
}

if have_initdb; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "note: PostgreSQL (initdb) not found and not root: team tests will be skipped (apt-get install postgresql)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "note: PostgreSQL (initdb) not found and no apt-get here: team tests will be skipped"
    exit 0
fi
echo "installing Debian's postgresql package for the team tests ..."
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq >/dev/null 2>&1 \
    && apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 && have_initdb; then
    echo "PostgreSQL installed: $(compgen -G '/usr/lib/postgresql/*/bin/initdb' | head -n 1)"
else
    echo "note: could not install postgresql with apt-get: team tests will be skipped"
fi
exit 0
