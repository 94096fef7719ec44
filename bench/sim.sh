#!/usr/bin/env bash
# Times the HyParView simulator against a fixed baseline, in one run:
#   1. `stable --nodes 10000 --rounds 50` built from this tree and from the
#      baseline commit (default 350a4b0), one after the other: CPU ratio;
#   2. `stable --nodes 50000 --rounds 20` built from this tree: CPU time and
#      max RSS per node.
#   bash bench/sim.sh [--baseline REV] [--nodes 10000] [--rounds 50]
#                     [--large-nodes 50000] [--large-rounds 20] [--out bench/results/sim.json]
# Targets (issue 8): ours <= 1/3 of the baseline's CPU; the large run under
# 60 s CPU and at most 12 KB max RSS per node. The baseline is extracted with
# `git archive` into a temporary directory and built there (not committed);
# its build is cached under target/sim-baseline-REV. Builds are not timed.
# Writes the JSON to --out and a summary next to it (sim.md).
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=350a4b0 nodes=10000 rounds=50 large_nodes=50000 large_rounds=20 out=bench/results/sim.json
while [ $# -gt 0 ]; do
  case "$1" in
    --baseline) baseline=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --large-nodes) large_nodes=$2; shift 2 ;;
    --large-rounds) large_rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: bash bench/sim.sh [--baseline REV] [--nodes N] [--rounds R] [--large-nodes N] [--large-rounds R] [--out FILE]" >&2; exit 2 ;;
  esac
done
[ -x /usr/bin/time ] || { echo "bench/sim.sh needs /usr/bin/time (apt: time)" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-target}
timeout 1200 cargo build --release -p hyparview-sim >&2
ours=$target/release/hyparview-sim

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git archive "$baseline" | tar -x -C "$src"
base_target=$(realpath -m "$target/sim-baseline-$baseline")
(cd "$src" && CARGO_TARGET_DIR=$base_target timeout 1200 cargo build --release -p hyparview-sim >&2)
base=$base_target/release/hyparview-sim

mkdir -p "$(dirname "$out")"
python3 - "$ours" "$base" "$baseline" "$nodes" "$rounds" "$large_nodes" "$large_rounds" "$out" <<'PY'
import json, os, re, subprocess, sys, time
ours, base, baseline, nodes, rounds, lnodes, lrounds, out = sys.argv[1:]

def timed(binary, n, r):
    """Runs `stable --nodes n --rounds r --json` under /usr/bin/time -v."""
    cmd = ["/usr/bin/time", "-v", binary, "stable", "--nodes", n, "--rounds", r, "--json"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        sys.exit(f"{binary} failed with exit code {p.returncode}")
    field = lambda name: float(re.search(re.escape(name) + r":\s*([0-9.]+)", p.stderr).group(1))
    rep = json.loads(p.stdout)
    cpu = field("User time (seconds)") + field("System time (seconds)")
    rss_kb = field("Maximum resident set size (kbytes)")
    msgs = sum(rep.get("messages_by_kind", {}).values())
    return {
        "command": "hyparview-sim stable --nodes %s --rounds %s --json" % (n, r),
        "nodes": int(n), "rounds": int(r), "wall_s": wall, "cpu_s": cpu,
        "max_rss_mib": rss_kb / 1024, "rss_kb_per_node": rss_kb / int(n),
        "events": rep.get("events"), "events_per_s": rep["events"] / wall,
        "messages": msgs, "messages_per_s": msgs / wall,
        "virtual_ms": rep.get("virtual_ms"),
        "reliability_last": rep["reliability"][-1], "components": rep["components"],
        "active_view": rep["active_view"],
    }

load0 = open("/proc/loadavg").read().split()[:3]
b = timed(base, nodes, rounds)
o = timed(ours, nodes, rounds)
large = timed(ours, lnodes, lrounds)
ratio = o["cpu_s"] / b["cpu_s"]
head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
modified = bool(subprocess.run(["git", "status", "--porcelain", "native"], capture_output=True, text=True).stdout.strip())
res = dict(o)  # top level: our 10k run, in the keys bench/report.py reads
res.update({
    "git_head": head, "sources_modified": modified,
    "loadavg_start": load0, "loadavg": open("/proc/loadavg").read().split()[:3],
    "baseline": dict(b, commit=baseline),
    "cpu_ratio": ratio,
    "large": large,
    "targets": {
        "cpu_ratio_max": 1 / 3, "cpu_ratio_met": ratio <= 1 / 3,
        "large_cpu_s_max": 60, "large_cpu_met": large["cpu_s"] < 60,
        "large_rss_kb_per_node_max": 12, "large_rss_met": large["rss_kb_per_node"] <= 12,
    },
})
with open(out, "w") as f:
    json.dump(res, f, indent=2, sort_keys=True)
ok = lambda x: "met" if x else "NOT met"
t = res["targets"]
md = f"""# Simulator benchmark

`bash bench/sim.sh` on {head}{' (uncommitted edits under native/)' if modified else ''}; load average
{' '.join(load0)} before, {' '.join(res['loadavg'])} after (a shared 2-core machine: compare within the run).

| run | CPU s | wall s | max RSS | RSS / node | events |
|---|---|---|---|---|---|
| baseline {baseline}: stable {nodes} x {rounds} | {b['cpu_s']:.2f} | {b['wall_s']:.2f} | {b['max_rss_mib']:.0f} MiB | {b['rss_kb_per_node']:.1f} KB | {b['events']:,} |
| this tree: stable {nodes} x {rounds} | {o['cpu_s']:.2f} | {o['wall_s']:.2f} | {o['max_rss_mib']:.0f} MiB | {o['rss_kb_per_node']:.1f} KB | {o['events']:,} |
| this tree: stable {lnodes} x {lrounds} | {large['cpu_s']:.2f} | {large['wall_s']:.2f} | {large['max_rss_mib']:.0f} MiB | {large['rss_kb_per_node']:.1f} KB | {large['events']:,} |

- CPU ratio (this tree / baseline, {nodes} x {rounds}): **{ratio:.3f}** (target <= 0.333: {ok(t['cpu_ratio_met'])})
- {lnodes} x {lrounds}: **{large['cpu_s']:.1f} s** CPU (target < 60 s: {ok(t['large_cpu_met'])}),
  **{large['rss_kb_per_node']:.1f} KB** max RSS per node (target <= 12 KB: {ok(t['large_rss_met'])})
- Final reliability / components: baseline {b['reliability_last']} / {b['components']}, this tree
  {o['reliability_last']} / {o['components']}, large {large['reliability_last']} / {large['components']}
"""
with open(os.path.join(os.path.dirname(out), "sim.md"), "w") as f:
    f.write(md)
print(md)
PY
