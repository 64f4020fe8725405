# Shared by the ensure-*.sh scripts (sourced, not run): install Debian packages a group of tests needs.
#
# apt_ensure CHECK WHAT TESTS PACKAGE...
#   CHECK    a command that succeeds when the tool is there
#   WHAT     what CHECK looks for, for the notes ("PostgreSQL (initdb)")
#   TESTS    the tests that need it ("team tests")
# Installs PACKAGE... with apt-get only when CHECK fails and we are root. Never fails the build: without apt (or
# without root, or offline) it prints a note, returns 1, and those tests skip themselves with the same reason.

apt_ensure() {
    local check=$1 what=$2 tests=$3
    shift 3
    if "$check"; then
        return 0
    fi
    if [ "$(id -u)" != "0" ]; then
        echo "note: $what not found and not root: the $tests will be skipped (apt-get install $*)"
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "note: $what not found and no apt-get here: the $tests will be skipped"
        return 1
    fi
    echo "installing Debian's $* for the $tests ..."
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq >/dev/null 2>&1 \
        && apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 && "$check"; then
        return 0
    fi
    echo "note: could not install $* with apt-get: the $tests will be skipped"
    return 1
}
