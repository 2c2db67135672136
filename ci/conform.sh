#!/usr/bin/env bash
# The main job: set-up, a release build, then `secnet conform` on the netns cluster.
# Run as root. Extra arguments go to `secnet conform`, e.g. --report reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/bootstrap.sh
cargo build --release --workspace --bins
exec target/release/secnet conform "$@"
