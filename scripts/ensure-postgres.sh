#!/usr/bin/env bash
# Make Debian's PostgreSQL server binaries (initdb, pg_ctl) available for nflab's team tests (tests/team).
# Installs the `postgresql` package with apt-get only when initdb is missing and we are root. Never fails the
# build: without apt (or without root, or offline) it prints a note and the team tests skip themselves.
set -u
source "$(dirname "$0")/apt-ensure.sh"

have_initdb() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1
}

if ! have_initdb && apt_ensure have_initdb "PostgreSQL (initdb)" "team tests" postgresql; then
    echo "PostgreSQL installed: $(compgen -G '/usr/lib/postgresql/*/bin/initdb' | head -n 1)"
fi
exit 0
