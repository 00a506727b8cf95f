#!/bin/sh
# The test command (README, .ci/run): installs the servers and the browser the tests start
# when they are missing (Debian packages; needs root), checks formatting and lints, then
# runs the whole test suite.
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

# House rules first: formatting and lints (warnings are errors).
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --no-fail-fast "$@"
