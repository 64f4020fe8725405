#!/usr/bin/env bash
# Make Debian's headless Chromium and its chromedriver available for nflab's real-browser test
# (tests/integration/test_serve_browser.py). Installs the `chromium` and `chromium-driver` packages with apt-get
# only when a browser or the driver is missing and we are root. Never fails the build: without apt (or without
# root, or offline) it prints a note and the browser test skips itself with the same reason.
set -u

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

if have_all; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "note: chromium/chromedriver not found and not root: the browser test will be skipped (apt-get install chromium chromium-driver)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "note: chromium/chromedriver not found and no apt-get here: the browser test will be skipped"
    exit 0
fi
echo "installing Debian's chromium and chromium-driver packages for the browser test ..."
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq >/dev/null 2>&1 \
    && apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null 2>&1 \
    && have_all; then
    echo "browser installed: $(find_browser), driver: $(command -v chromedriver)"
else
    echo "note: could not install chromium/chromium-driver with apt-get: the browser test will be skipped"
fi
exit 0
