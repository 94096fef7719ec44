#!/usr/bin/env bash
# Cluster benchmark: Cluster.Strategy.HyParView vs full mesh vs an unclustered
# control on real local BEAM nodes, then the simulator timing, then the report.
#
#   bash bench/run.sh [--sizes 16,64,128,256] [--modes none,fullmesh,hyparview] [--idle 30]
#                     [--hv key=value,...] [--no-sim] [any other cluster_bench.exs option]
#
# One cluster_bench.exs invocation per N (every mode of that N in the same
# run, so the ratios compare like with like), each written to
# bench/results/runs/cluster-N<n>.json; report.py merges the runs (newest run
# of each N wins) into bench/results/cluster.json and writes
# bench/results/{latest.json,latest.md,links.png,scaling.png}.
# With BENCH_LOCK=<file> set, each invocation runs under `flock <file>` (a
# machine shared by several heavy jobs). Not part of `mix test`/CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export MIX_ENV="${MIX_ENV:-test}"   # the libcluster stand-in is compiled in :test

sim=1
sizes="16,64,128,256"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-sim) sim=0 ;;
    --sizes) sizes="$2"; shift ;;
    --sizes=*) sizes="${1#--sizes=}" ;;
    *) args+=("$1") ;;
  esac
  shift
done

# Release NIF for measurements; the project's Mix compiler builds it.
timeout 1200 mix compile >&2
epmd -daemon
mkdir -p bench/results/runs
lock=()
if [ -n "${BENCH_LOCK:-}" ]; then lock=(flock "$BENCH_LOCK"); fi
for n in ${sizes//,/ }; do
  "${lock[@]}" timeout 1800 mix run --no-start bench/cluster_bench.exs --sizes "$n" \
    --out "bench/results/runs/cluster-N$n.json" "${args[@]}"
done
if [ "$sim" = 1 ]; then bash bench/sim.sh; fi
python3 bench/report.py >/dev/null
echo "report: bench/results/latest.md, plots: bench/results/{scaling,links}.png" >&2
sed -n '/^## Targets/,$p' bench/results/latest.md
