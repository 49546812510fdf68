#!/usr/bin/env bash
# The project's test command (named in README.md; .ci/run calls it).
#
#   ./scripts/test.sh            build everything, run every test (unit, end-to-end, browser)
#   ./scripts/test.sh -E 'test(sync)'   extra arguments go to `cargo nextest run`
#
# The end-to-end tests in tests/ start the `mixgate` binary of the same target folder, so it is
# built first. The browser test (tests/tests/browser.rs) needs `npm ci` in tests/browser and
# Chromium at /usr/bin/chromium (.ci/run installs both); without them it fails with a message
# saying so, unless MIXGATE_SKIP_BROWSER=1.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo build --workspace --bins"
cargo build --workspace --bins

if [ -d tests/browser/node_modules ]; then
  echo "== building the Hydrogen bundle (tests/browser)"
  (cd tests/browser && node build.mjs)
fi

echo "== cargo nextest run --workspace"
cargo nextest run --workspace --no-fail-fast "$@"
