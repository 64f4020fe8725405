#!/usr/bin/env bash
# Make Debian's headless Chromium and its chromedriver available for nflab's real-browser test
# (tests/integration/test_serve.py). Installs the `chromium` and `chromium-driver` packages with apt-get
# only when a browser or the driver is missing and we are root. Never fails the build: without apt (or without
# root, or offline) it prints a note and the browser test skips itself with the same reason.
set -u
source "$(dirname "$0")/apt-ensure.sh"

find_browser() {
    for b in chromium chromium-browser chromium-headless-shell google-chrome; do
        if command -v "$b" >/dev/null 2>&1; then
            command -v "$b"
            return 0
        fi
    done
    if [ -x /usr/lib/chromium/chromium ]; then
        echo /usr/lib/chromium/chromium
        return 0
    fi
    return 1
}

have_all() {
    find_browser >/dev/null && command -v chromedriver >/dev/null 2>&1
}

if ! have_all && apt_ensure have_all "chromium/chromedriver" "browser test" chromium chromium-driver fonts-dejavu-core
then
    echo "browser installed: $(find_browser), driver: $(command -v chromedriver)"
fi
exit 0
