#!/usr/bin/env bash
# Transport before and after the Noise channel, in one run: builds the
# transport bench (native/hyparview_transport/tests/bench.rs) at BASE (the
# last main commit before the Noise merge) in a temporary git worktree with
# its own target dir, with the bench's `client` module swapped for one that
# speaks protocol version 1; and, unless MERGE is empty, at MERGE (the Noise
# merge itself, before later merges changed the overlay) with the bench as
# it is now. Then runs all of them and the work tree alternately ROUNDS
# times and writes bench/results/transport.md (medians and ratios).
#
#   flock <lockfile> bash bench/transport.sh        # ROUNDS=5 CONV=4
#   ROUNDS=3 CONV=2 KEEP=1 bash bench/transport.sh          # KEEP: reuse the builds
#
# The temporary worktrees and their target dir are removed at the end
# unless KEEP=1 (a later run then reuses them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BASE=${BASE:-33c1d14}
MERGE=${MERGE-e10d6f5}
ROUNDS=${ROUNDS:-5}
CONV=${CONV:-4}
TMP=${TMPDIR:-/tmp}/hv-transport-base
TMPM=${TMPDIR:-/tmp}/hv-transport-merge
OUT=bench/results/transport.md
export CARGO_INCREMENTAL=0

cleanup() {
  if [ "${KEEP:-0}" != 1 ]; then
    git -C "$ROOT" worktree remove --force "$TMP" 2>/dev/null || rm -rf "$TMP"
    git -C "$ROOT" worktree remove --force "$TMPM" 2>/dev/null || rm -rf "$TMPM"
    git -C "$ROOT" worktree prune
  fi
}
trap cleanup EXIT

if [ ! -d "$TMP" ]; then
  git worktree add --detach "$TMP" "$BASE" >/dev/null
fi
if [ -n "$MERGE" ] && [ ! -d "$TMPM" ]; then
  git worktree add --detach "$TMPM" "$MERGE" >/dev/null
fi

# The bench as it is now, with the version-1 client in place of `client`.
cat > "$TMP/v1_client.rs" <<'RS'
mod client {
    use super::*;
    use hyparview_transport::wire::{self, Identity, Role};
    use tokio::io::AsyncWriteExt;

    pub struct Conn {
        s: TcpStream,
    }

    pub async fn connect(to: std::net::SocketAddr, id: &str) -> Conn {
        let me = Identity {
            id: id.to_string(),
            addr: "127.0.0.1:9".parse().unwrap(),
            incarnation: 1,
            secret: SECRET.to_vec(),
        };
        let mut s = TcpStream::connect(to).await.unwrap();
        s.set_nodelay(true).unwrap();
        tokio::time::timeout(
            Duration::from_secs(10),
            wire::handshake(&mut s, &me, Role::Dialer, None),
        )
        .await
        .unwrap()
        .unwrap();
        Conn { s }
    }

    pub async fn send(c: &mut Conn, frames: &[Frame]) {
        let mut out = Vec::new();
        for f in frames {
            out.extend_from_slice(&wire::encode(f));
        }
        c.s.write_all(&out).await.unwrap();
        c.s.flush().await.unwrap();
    }

    pub async fn recv(c: &mut Conn) -> Frame {
        wire::read_frame(&mut c.s, 65536).await.unwrap()
    }

    /// Version 1 had no eviction.
    pub fn evicted(_: &hyparview_transport::Counters) -> u64 {
        0
    }
}
RS
awk -v client="$TMP/v1_client.rs" '
  /^\/\/ client: begin/ { while ((getline line < client) > 0) print line; skip = 1; next }
  /^\/\/ client: end/ { skip = 0; next }
  !skip { print }
' native/hyparview_transport/tests/bench.rs > "$TMP/native/hyparview_transport/tests/bench.rs"
[ -z "$MERGE" ] || cp native/hyparview_transport/tests/bench.rs "$TMPM/native/hyparview_transport/tests/bench.rs"

build() { # dir: one target dir for both old trees (shared dependencies)
  (cd "$1" && CARGO_TARGET_DIR=$TMP/target cargo test --release -p hyparview_transport --test bench --no-run 2>&1 | tail -1)
}
echo "building $BASE (before), ${MERGE:-no merge} and the work tree (after)" >&2
build "$TMP" >&2
[ -z "$MERGE" ] || build "$TMPM" >&2
(cargo test --release -p hyparview_transport --test bench --no-run 2>&1 | tail -1) >&2

LOG=$(mktemp)
run() { # label dir [target dir]
  (cd "$2" && CARGO_TARGET_DIR=${3:-$2/target} BENCH_ROUNDS=$CONV cargo test --release -q -p hyparview_transport --test bench \
     -- --ignored --nocapture --test-threads 1 2>/dev/null) | grep -o 'BENCH.*' | sed "s/^/$1 /" >> "$LOG"
}
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  run before "$TMP" "$TMP/target"
  [ -z "$MERGE" ] || run merge "$TMPM" "$TMP/target"
  run after "$ROOT" "$ROOT/target"
done

python3 - "$LOG" "$OUT" "$BASE" "$(git rev-parse --short HEAD)" "$ROUNDS" "$CONV" "$MERGE" "$(uptime)" <<'PY'
import re, statistics, sys
log, out, base, head, rounds, conv, merge, load = sys.argv[1:]
pat = {
    "handshakes/s": (r"BENCH handshakes: .* = (\d+)/s", True),
    "ping round trip (µs)": (r"BENCH ping round trip: ([\d.]+) us", False),
    "frames/s each way": (r"BENCH frame throughput: .* = (\d+) frames/s", True),
    "64-node convergence (s)": (r"BENCH convergence: .* after ([\d.]+) s", False),
    "handshake CPU, both sides (µs)": (r"BENCH handshake cpu: ([\d.]+) us", False),
}
steps = []
for line in open(log):
    m = re.search(r"BENCH handshake step: +[\d.]+ us  (.*)", line)
    if m and m.group(1).strip() not in steps:
        steps.append(m.group(1).strip())
for st in steps:
    pat["handshake step (µs): " + st] = (r"BENCH handshake step: +([\d.]+) us  " + re.escape(st) + "$", False)
pat["handshake steps, total (µs)"] = (r"BENCH handshake steps total: ([\d.]+) us", False)
vals = {}
for line in open(log):
    line = line.rstrip("\n")
    who, rest = line.split(" ", 1)
    for name, (rx, _) in pat.items():
        m = re.search(rx, rest)
        if m:
            vals.setdefault((name, who), []).append(float(m.group(1)))
fmt = lambda v: f"{v:.3f}" if v < 10 else (f"{v:.1f}" if v < 1000 else f"{v:.0f}")
rng = lambda xs: f"{fmt(min(xs))}–{fmt(max(xs))}"
cell = lambda xs: f"{fmt(statistics.median(xs))} ({rng(xs)})" if xs else "n/a"
ratio = lambda xs, bs: f"{statistics.median(xs) / statistics.median(bs):.2f}" if xs and bs else ""
rows = []
for name, (_, higher) in pat.items():
    b, m, a = (vals.get((name, w), []) for w in ("before", "merge", "after"))
    if not a:
        continue
    rows.append(f"| {name} | {cell(b)} | {cell(m)} | {ratio(m, b)} | {cell(a)} | {ratio(a, b)} | {'higher' if higher else 'lower'} |")
with open(out, "w") as f:
    f.write(f"""# Transport before and after the Noise channel

Written by `bench/transport.sh` (the benches built and run alternately in one
run, {rounds} rounds, {conv} convergence samples per round): before = `{base}`
(protocol version 1, HMAC handshake, cleartext frames), merge = `{merge or "-"}`
(the Noise NNpsk0 channel as merged), after = `{head}` (the channel with
everything merged since). Medians, with the range seen. Load at the end:
`{load.strip()}`.

| measure | before | merge | merge / before | after | after / before | better |
|---|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n")
    f.write("\nSamples:\n\n```\n" + open(log).read() + "```\n")
print(open(out).read())
PY
rm -f "$LOG"
