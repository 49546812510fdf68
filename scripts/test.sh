#!/usr/bin/env bash
# Runs the whole test suite: unit tests, end-to-end tests against real gateway processes, and
# the transport's loopback network tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
