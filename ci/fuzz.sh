#!/usr/bin/env bash
# Fuzzes the input parsers (both CNIs' config + CNI_ARGS, the device plugin's config, the
# network-selection annotation, ovsdb-server's framing, the node policy, and the HPACK
# decoder and :authority rewriter that read gRPC clients' sockets) for a bounded time
# each. Not part of .ci/run: run it nightly or before a release. FUZZ_SECONDS per target (default 60).
# Needs cargo-fuzz (cargo install cargo-fuzz); the stable toolchain is enough
# because RUSTC_BOOTSTRAP lets it pass the sanitizer flags.
# fuzz/corpus/<target> is a small regression corpus kept in git (about 50 inputs
# each, spread over the input sizes); new inputs go to the untracked
# fuzz/corpus-local/<target>, which starts from it and grows from run to run.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-60}"
export RUSTC_BOOTSTRAP=1
for target in macvtap_cni_config ovs_cni_config deviceplugin_config network_selection ovsdb_framer node_policy hpack_decoder authority_rewriter; do
  echo "fuzz: $target for ${seconds}s"
  mkdir -p "corpus-local/$target"
  cargo fuzz run "$target" "corpus-local/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048
done
