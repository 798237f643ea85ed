#!/usr/bin/env bash
# Runs the browser tests of the operator's page against a built server.
#
#   tests/browser/run.sh [SERVER_BIN [ROBOT_BIN]] [-- PYTEST_ARGS...]
#
# Defaults: target/release/{socket-server,rpa-robot}, else target/debug. Needs Debian's
# Chromium (apt-get install chromium); the Python packages go into a virtual environment
# (target/browser-venv, or $RPA_UI_VENV), created on first use from requirements.txt.
# Screenshots for the docs are written to docs/img (or $RPA_UI_SCREENSHOTS).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

pick() {
    local name=$1
    for profile in release debug; do
        if [ -x "$root/target/$profile/$name" ]; then
            echo "$root/target/$profile/$name"
            return
        fi
    done
    echo "$root/target/release/$name"
}

server_bin="${RPA_SERVER_BIN:-$(pick socket-server)}"
robot_bin="${RPA_ROBOT_BIN:-$(pick rpa-robot)}"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then server_bin=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != "--" ]; then robot_bin=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi

for binary in "$server_bin" "$robot_bin"; do
    if [ ! -x "$binary" ]; then
        echo "run.sh: $binary is missing: cargo build --release -p socket-server -p rpa-robot" >&2
        exit 2
    fi
done
chromium="${RPA_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    echo "run.sh: no browser at $chromium: apt-get install chromium" >&2
    exit 2
fi

venv="${RPA_UI_VENV:-$root/target/browser-venv}"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$stamp"
fi

export RPA_SERVER_BIN="$(cd "$(dirname "$server_bin")" && pwd)/$(basename "$server_bin")"
export RPA_ROBOT_BIN="$(cd "$(dirname "$robot_bin")" && pwd)/$(basename "$robot_bin")"
export RPA_CHROMIUM="$chromium"
# Playwright must use the browser it is given, never fetch one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
