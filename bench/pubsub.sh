#!/usr/bin/env bash
# PubSub benchmark: Phoenix.PubSub over HyParView.PubSub vs Phoenix.PubSub.PG2
# over a full mesh, 32 fresh local BEAM nodes each, in one run.
#
#   bash bench/pubsub.sh [--nodes 32] [--rounds 1] [--messages 2000] [--size 1024]
#                        [--lat-messages 2000] [--rate 200] [--modes pg2,hyparview]
#                        [--hv shuffle_interval=5000,...]
#
# Writes bench/results/pubsub.{json,md}. Not part of `mix test`/CI. ~2.5 min per round (32 nodes).
# Boots BEAM nodes: on a shared machine run it under the heavy lock
# (e.g. flock <lockfile> bash bench/pubsub.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export MIX_ENV="${MIX_ENV:-test}"   # the libcluster and phoenix_pubsub stand-ins come with :test
export HYPARVIEW_LIBCLUSTER="${HYPARVIEW_LIBCLUSTER:-standin}"

# Release NIF for measurements; the project's Mix compiler builds it.
timeout 1200 mix compile >&2
epmd -daemon
timeout 1800 mix run --no-start bench/pubsub_bench.exs "$@"
