#!/usr/bin/env bash
# Times the HyParView simulator: 10,000 nodes, 50 rounds (stable scenario).
#   bash bench/sim.sh [--nodes 10000] [--rounds 50] [--out bench/results/sim.json]
# The release build is done first and not timed; the timed run is the binary
# itself (what `cargo run --release -p hyparview-sim -- ...` executes).
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=10000 rounds=50 out=bench/results/sim.json
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: bash bench/sim.sh [--nodes N] [--rounds R] [--out FILE]" >&2; exit 2 ;;
  esac
done
timeout 1200 cargo build --release -p hyparview-sim >&2
mkdir -p "$(dirname "$out")"
python3 - "$nodes" "$rounds" "$out" <<'PY'
import json, os, resource, subprocess, sys, time
nodes, rounds, out = sys.argv[1], sys.argv[2], sys.argv[3]
target = os.environ.get("CARGO_TARGET_DIR", "target")
cmd = [os.path.join(target, "release", "hyparview-sim"), "stable", "--nodes", nodes,
       "--rounds", rounds, "--json"]
load0 = open("/proc/loadavg").read().split()[:3]
t0 = time.monotonic()
p = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
if p.returncode != 0:
    sys.stderr.write(p.stderr)
    sys.exit(f"simulator failed with exit code {p.returncode}")
rep = json.loads(p.stdout)
msgs = sum(rep.get("messages_by_kind", {}).values())
res = {
    "command": "cargo run --release -p hyparview-sim -- stable --nodes %s --rounds %s --json" % (nodes, rounds),
    "nodes": int(nodes), "rounds": int(rounds),
    "wall_s": wall,
    "cpu_s": ru.ru_utime + ru.ru_stime,
    "max_rss_mib": ru.ru_maxrss / 1024,
    "events": rep.get("events"),
    "events_per_s": rep["events"] / wall if rep.get("events") is not None else None,
    "messages": msgs,
    "messages_per_s": msgs / wall,
    "sim_internal_wall_ms": rep.get("wall_ms"),
    "virtual_ms": rep.get("virtual_ms"),
    "report": rep,
    "loadavg_start": load0,
    # The build is of the working tree: note the commit and whether the
    # simulator/core sources had uncommitted edits at the time.
    "git_head": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "sources_modified": bool(subprocess.run(["git", "status", "--porcelain", "native/hyparview", "native/hyparview-sim"],
                                            capture_output=True, text=True).stdout.strip()),
    "loadavg": open("/proc/loadavg").read().split()[:3],
}
with open(out, "w") as f:
    json.dump(res, f, indent=2, sort_keys=True)
print("sim: %s nodes x %s rounds: wall %.2f s, cpu %.2f s, %s events (%.0f/s), %d messages (%.0f/s), max RSS %.0f MiB"
      % (nodes, rounds, wall, res["cpu_s"], rep.get("events"), res["events_per_s"] or 0, msgs,
         res["messages_per_s"], res["max_rss_mib"]))
PY
