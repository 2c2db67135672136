#!/usr/bin/env bash
# The test command: set-up, one build of every binary, then every test with nextest.
# Run as root (network namespaces). Extra arguments go to nextest, e.g. --profile ci.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/bootstrap.sh --tests
# The integration tests run the real plugin binaries: build them once, first.
cargo build --workspace --bins
cargo nextest run --workspace "$@"
