#!/usr/bin/env bash
# Flake hunt: runs `secnet conform` N times back to back on a loaded machine (a CPU
# hog, optionally a second conform run in parallel under its own run id), checks
# after every run that nothing of it is left (ip netns, ip link, /dev/tap*, ps), and
# prints per scenario: runs, failures, slowest. Not part of .ci/run (minutes long).
#
#   ci/flake-hunt.sh [-n RUNS] [-p PARALLEL] [--no-load] [--secnet BIN] [--out DIR] [-- conform args]
#
#   -n RUNS       rounds (default 20)
#   -p PARALLEL   conform runs at once per round, each with its own run id (default 2)
#   --no-load     no CPU hog (default: stress-ng --cpu 2, installed if missing)
#   --secnet BIN  the secnet binary (default target/release/secnet; build it with
#                 cargo build --release --workspace --bins)
#   --out DIR     where reports and logs go (default: a new $TMPDIR/secnet-flake-hunt-XXXXXX)
# Exit status: 0 when every run passed and left nothing, 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
runs=20
parallel=2
load=1
secnet=target/release/secnet
out=""
while [[ $# -gt 0 ]]; do
    case $1 in
        -n) runs=$2; shift 2 ;;
        -p) parallel=$2; shift 2 ;;
        --no-load) load=0; shift ;;
        --secnet) secnet=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "flake-hunt: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
extra=("$@")

[[ $EUID -eq 0 ]] || { echo "flake-hunt: run as root (secnet conform needs network namespaces)" >&2; exit 2; }
[[ -x $secnet ]] || { echo "flake-hunt: $secnet missing; build it: cargo build --release --workspace --bins" >&2; exit 2; }
out=${out:-$(mktemp -d "${TMPDIR:-/tmp}/secnet-flake-hunt-XXXXXX")}
mkdir -p "$out"

hog=""
stop_hog() { [[ -n $hog ]] && kill "$hog" 2>/dev/null && wait "$hog" 2>/dev/null || true; }
trap stop_hog EXIT
if [[ $load == 1 ]]; then
    if ! command -v stress-ng >/dev/null; then
        echo "flake-hunt: installing stress-ng" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng >/dev/null
    fi
    stress-ng --cpu 2 --quiet &
    hog=$!
fi

# The device nodes present now (path and inode), to tell a run's new ones.
taps_now() { for t in /dev/tap*; do [[ -e $t ]] && stat -c '%n %i' "$t"; done 2>/dev/null | sort || true; }

# What is left of run $1 right after it exited (empty: nothing).
leftovers() {
    local id=$1 before=$2
    ip netns list | awk '{print $1}' | grep "^$id-" | sed 's/^/netns /' || true
    ip -o link show | grep -F -- "$id" | sed 's/^/link /' || true
    ls -d /run/secnet/"$id" 2>/dev/null | sed 's/^/run dir /' || true
    ps -eo pid=,args= | grep -F -- "$id" | grep -v -e grep -e flake-hunt | sed 's/^/process /' || true
    # New since the round began and still there (another concurrent run's are
    # possible: the macvtap's name is shown to tell).
    local new
    new=$(comm -13 "$before" <(taps_now))
    [[ -z $new ]] && return 0
    sleep 2 # tell a node still being released from one that stays
    while read -r path ino; do
        local after="gone 2 s later"
        [[ $(stat -c %i "$path" 2>/dev/null) == "$ino" ]] && after="still there 2 s later: another run's?"
        echo "device node $path ($after)"
    done <<<"$new"
}

echo "flake-hunt: $runs round(s) x $parallel run(s), load=$load, $secnet, output in $out" >&2
failed_runs=0
leaky_runs=0
for ((round = 1; round <= runs; round++)); do
    before="$out/taps-$round.before"
    taps_now >"$before"
    pids=()
    for ((j = 1; j <= parallel; j++)); do
        name="r$round-$j"
        start=$(date +%s.%N)
        (
            rc=0
            "$secnet" conform --report "$out/$name" "${extra[@]}" 2>"$out/$name.log" || rc=$?
            echo "$rc $(date +%s.%N)" >"$out/$name.rc"
        ) &
        pids+=($!)
        echo "$start" >"$out/$name.start"
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    for ((j = 1; j <= parallel; j++)); do
        name="r$round-$j"
        read -r rc ended <"$out/$name.rc"
        id=$(head -1 "$out/$name.log" | grep -o 'sn[0-9a-f]\{6\}' | head -1 || true)
        left=$(leftovers "${id:-none}" "$before")
        printf '%s\n' "$left" | sed '/^$/d' >"$out/$name.left"
        started=$(cat "$out/$name.start")
        status=ok
        [[ $rc != 0 ]] && { status="FAILED (exit $rc)"; failed_runs=$((failed_runs + 1)); }
        [[ -s $out/$name.left ]] && { status="$status, LEFT: $(tr '\n' ';' <"$out/$name.left")"; leaky_runs=$((leaky_runs + 1)); }
        printf 'round %2d run %d (%s): %6.1f s  %s\n' "$round" "$j" "${id:-?}" \
            "$(awk "BEGIN{print $ended - $started}")" "$status" >&2
        if [[ $rc != 0 ]]; then grep -E '^\[.*FAIL' -A3 "$out/$name.log" | sed 's/^/    /' >&2 || true; fi
    done
done
stop_hog

python3 - "$out" "$runs" "$parallel" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
stats = {}
for report in sorted(out.glob("r*/report.json")):
    for s in json.loads(report.read_text())["scenarios"]:
        st = stats.setdefault(s["name"], {"runs": 0, "failed": 0, "slowest": 0.0, "first": ""})
        st["runs"] += 1
        st["slowest"] = max(st["slowest"], s["duration_s"])
        if s["status"] == "failed":
            st["failed"] += 1
            st["first"] = st["first"] or f'{report.parent.name}: {s["message"].splitlines()[0][:160]}'
reports = len(list(out.glob("r*/report.json")))
print(f"\n{reports} report(s) of {int(sys.argv[2]) * int(sys.argv[3])} run(s)\n")
print(f'{"scenario":<78} {"runs":>4} {"fail":>4} {"slowest":>8}')
for name, st in stats.items():
    print(f'{name[:78]:<78} {st["runs"]:>4} {st["failed"]:>4} {st["slowest"]:>7.2f}s')
for name, st in stats.items():
    if st["failed"]:
        print(f'  {name}: {st["first"]}')
EOF
echo "flake-hunt: $failed_runs failed run(s), $leaky_runs run(s) with leftovers; logs in $out" >&2
[[ $failed_runs == 0 && $leaky_runs == 0 ]]
