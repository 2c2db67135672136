#!/usr/bin/env bash
# How many seeded plugin bugs the conformance scenarios catch. Slow: not in .ci/run.
#
# Samples SAMPLE mutants (seeded, reproducible) that cargo-mutants makes of the
# bundled plugins, builds each mutant's binaries, puts them under test with
# `secnet conform --plugin NAME=PATH`, running the scenarios that exercise the
# mutated crate, and writes the score (killed / viable) and the survivors.
# Only the conformance scenarios count; the plugins' own unit tests are not run.
#
#   cargo install cargo-mutants        # a tool, not a project dependency
#   sudo ci/mutants.sh                 # root: the netns cluster
#   SEED=27 SAMPLE=30 ONLY='name-regex' ci/mutants.sh
#
# Output in $OUT (default target/mutants-score): score.txt, results.tsv (one line
# per mutant: verdict, package, mutant name, failed scenarios or why equivalent),
# logs/. Verdicts: killed, survived, unviable (does not build), equivalent (see
# EQUIVALENT below: not run, not counted).
# Mutants are built from a copy of HEAD's sources into target/mutants (a build of
# the plugin crates only, never of the harness).
set -euo pipefail

SEED=${SEED:-27}
SAMPLE=${SAMPLE:-30}
ONLY=${ONLY:-}
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
OUT=${OUT:-$repo/target/mutants-score}
SECNET=${SECNET:-$repo/target/debug/secnet}
JOBS=${JOBS:-2}
export CARGO_TARGET_DIR=$repo/target/mutants

command -v cargo-mutants >/dev/null || {
  echo "ci/mutants.sh: cargo-mutants is missing: cargo install cargo-mutants" >&2
  exit 2
}
[ -x "$SECNET" ] || {
  echo "ci/mutants.sh: $SECNET is missing: cargo build -p secnet" >&2
  exit 2
}
[ "$(id -u)" = 0 ] || {
  echo "ci/mutants.sh: the netns cluster needs root" >&2
  exit 2
}

mkdir -p "$OUT/logs"
work=$(mktemp -d "${TMPDIR:-/tmp}/secnet-mutants-XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/src
mkdir -p "$src"
git -C "$repo" archive HEAD | tar -x -C "$src"
# git archive dates every file at HEAD's commit: cargo would take a target/mutants
# built later from other sources (another branch, a copied target/) as fresh.
find "$src" -type f -exec touch {} +

# Every mutant of the plugin crates, then a seeded sample of them. install-cni is
# deployment tooling no scenario runs; test code is not mutated by cargo-mutants.
(cd "$src" && cargo mutants --list --json --diff \
  -p cni-kit -p macvtap-cni -p macvtap-deviceplugin -p ovs-cni) >"$work/all.json"
python3 - "$work/all.json" "$SEED" "$SAMPLE" "$ONLY" "$work/sample" <<'EOF'
import json, os, random, re, sys
all_path, seed, size, only, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
mutants = [m for m in json.load(open(all_path)) if "install_cni" not in m["file"]]
mutants.sort(key=lambda m: m["name"])
if only:
    chosen = [m for m in mutants if re.search(only, m["name"])]
else:
    chosen = random.Random(seed).sample(mutants, min(size, len(mutants)))
os.makedirs(out, exist_ok=True)
for i, m in enumerate(chosen):
    # cargo-mutants' diff names the mutant on its +++ line: make it a patch.
    lines = m["diff"].splitlines(keepends=True)
    lines[1] = "+++ " + m["file"] + "\n"
    open(f"{out}/{i:03}.patch", "w").write("".join(lines))
    open(f"{out}/{i:03}.meta", "w").write(m["package"] + "\t" + m["name"] + "\n")
print(f"{len(chosen)} of {len(mutants)} mutants (seed {seed})", file=sys.stderr)
EOF

# Mutants that change nothing a user (or any program) could observe, each with why.
# They are reported, not run, and not counted as viable. Only truly equivalent
# mutants belong here: one that is merely hard to kill stays a survivor.
# Format: a substring of the mutant's name, a tab, the reason.
EQUIVALENT=$(cat <<'LIST'
ovsdb.rs:98:14: replace match guard datum.is_null() with false in set_members	every caller keeps only members of a type (uuid_of, as_i64, as_str), which drops the null the mutant adds
tapdev.rs:163:25: replace | with ^ in read_private_sysfs	MS_REC and MS_SLAVE are disjoint bits: ^ and | give the same flags
LIST
)
equivalent_reason() {
  local pattern reason
  while IFS=$'\t' read -r pattern reason; do
    [ -n "$pattern" ] && [[ "$1" == *"$pattern"* ]] && { echo "$reason"; return 0; }
  done <<<"$EQUIVALENT"
  return 1
}

# The scenarios that run each crate's binaries (cni-kit is in all three). Scenario
# names start with their group: keep these in step with `secnet conform --list`.
focus_of() {
  case "$1" in
    ovs-cni) echo '^(ovs/|security/ovs|ipv6/OVS)' ;;
    macvtap-cni | macvtap-deviceplugin) echo '^(seed/|macvtap-cni/|security/macvtap|bad-input/|fault/|ipv6/macvtap)' ;;
    *) echo '^(seed/|ovs/|macvtap-cni/|security/|bad-input/|fault/|ipv6/)' ;;
  esac
}

# The binaries a crate's mutant changes; the others are the unmutated build.
bins_of() {
  case "$1" in
    ovs-cni) echo ovs ;;
    macvtap-cni) echo macvtap ;;
    macvtap-deviceplugin) echo macvtap-deviceplugin ;;
    *) echo macvtap ovs macvtap-deviceplugin ;;
  esac
}
packages_of() {
  case "$1" in
    cni-kit) echo "-p macvtap-cni -p ovs-cni -p macvtap-deviceplugin" ;;
    *) echo "-p $1" ;;
  esac
}
base=$work/base
mkdir -p "$base"
(cd "$src" && nice cargo build -q -p macvtap-cni -p ovs-cni -p macvtap-deviceplugin --bins) >"$OUT/logs/base.log" 2>&1 || {
  echo "ci/mutants.sh: the unmutated plugins do not build (see $OUT/logs/base.log)" >&2
  exit 2
}
for b in macvtap ovs macvtap-deviceplugin; do cp "$CARGO_TARGET_DIR/debug/$b" "$base/"; done

results=$OUT/results.tsv
: >"$results"
for patch in "$work"/sample/*.patch; do
  id=$(basename "$patch" .patch)
  IFS=$'\t' read -r package name <"$work/sample/$id.meta"
  log=$OUT/logs/$id.log
  echo "== $id $name" | tee "$log"
  if reason=$(equivalent_reason "$name"); then
    printf '%s\t%s\t%s\t%s\n' equivalent "$package" "$name" "$reason" | tee -a "$results"
    continue
  fi
  patch -s -p0 -d "$src" <"$patch"
  bins=$work/bins/$id
  mkdir -p "$bins"
  cp "$base"/* "$bins/"
  # shellcheck disable=SC2046 # one word per -p and package
  if (cd "$src" && nice cargo build -q $(packages_of "$package") --bins) >>"$log" 2>&1; then
    for b in $(bins_of "$package"); do cp "$CARGO_TARGET_DIR/debug/$b" "$bins/"; done
    report=$OUT/logs/$id-report
    # --fail-fast: one failed scenario kills the mutant; the rest need not run.
    if nice "$SECNET" conform --focus "$(focus_of "$package")" --skip-label vm -j "$JOBS" --fail-fast \
      --plugin "macvtap=$bins/macvtap" --plugin "ovs=$bins/ovs" \
      --plugin "macvtap-deviceplugin=$bins/macvtap-deviceplugin" \
      --report "$report" >>"$log" 2>&1; then
      verdict=survived
    else
      verdict=killed
    fi
    failed=$(python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
print(", ".join(s["name"] for s in r["scenarios"] if s["status"] not in ("passed","skipped")))' \
      "$report/report.json" 2>/dev/null || echo "no report")
  else
    verdict=unviable
    failed=""
  fi
  patch -s -R -p0 -d "$src" <"$patch"
  rm -rf "$bins"
  printf '%s\t%s\t%s\t%s\n' "$verdict" "$package" "$name" "$failed" | tee -a "$results"
done

killed=$(grep -c '^killed' "$results" || true)
survived=$(grep -c '^survived' "$results" || true)
viable=$((killed + survived))
{
  echo "secnet mutants: seed $SEED, sample $(wc -l <"$results"), $(date -u +%F)"
  echo "killed $killed of $viable viable ($((viable ? 100 * killed / viable : 0))%)," \
    "$(grep -c '^unviable' "$results" || true) unviable, $(grep -c '^equivalent' "$results" || true) equivalent"
  echo "survivors:"
  { grep '^survived' "$results" || true; } | cut -f3 | sed 's/^/  /'
  echo "equivalent (not counted):"
  { grep '^equivalent' "$results" || true; } | cut -f3,4 | sed 's/^/  /; s/\t/: /'
} | tee "$OUT/score.txt"
