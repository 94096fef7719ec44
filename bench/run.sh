#!/usr/bin/env bash
# Cluster benchmark: Cluster.Strategy.HyParView vs full mesh on real local BEAM
# nodes, then the simulator timing, then the report.
#
#   bash bench/run.sh [--sizes 16,32,64] [--modes none,fullmesh,hyparview] [--idle 30]
#                     [--hv shuffle_interval=5000,heartbeat_interval=500,failure_timeout=2000]
#                     [--no-sim]
#
# Writes bench/results/{cluster.json,sim.json,latest.json,latest.md,links.png}.
# Not part of `mix test`/CI. Takes ~10 min for the default sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
export MIX_ENV="${MIX_ENV:-test}"   # the libcluster stand-in is compiled in :test

sim=1
args=()
for a in "$@"; do
  if [ "$a" = "--no-sim" ]; then sim=0; else args+=("$a"); fi
done

# Release NIF for measurements; the project's Mix compiler builds it.
timeout 1200 mix compile >&2
epmd -daemon
timeout 3600 mix run --no-start bench/cluster_bench.exs "${args[@]}"
if [ "$sim" = 1 ]; then bash bench/sim.sh; fi
python3 bench/report.py >/dev/null
echo "report: bench/results/latest.md, plot: bench/results/links.png" >&2
sed -n '/^## Targets/,$p' bench/results/latest.md
