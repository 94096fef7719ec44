#!/usr/bin/env bash
# Boots a local cluster on the HyParView strategy, kills a quarter of it with
# kill -9 and shows the repair. Arguments go to `mix hyparview.demo`
# (--nodes N, --kill K, --dot PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
hpv_ensure_tools

export MIX_ENV="${MIX_ENV:-dev}"
mix compile
exec mix hyparview.demo "$@"
