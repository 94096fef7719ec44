//! Plumtree over the simulated HyParView overlay at 1,000 nodes: delivery,
//! per-origin FIFO order and message redundancy, before and after half the
//! nodes fail at once.

use hyparview_sim::{parse_broadcast_args, run_broadcast, BroadcastReport};

fn run(args: &str) -> BroadcastReport {
    let args: Vec<&str> = args.split_whitespace().collect();
    run_broadcast(&parse_broadcast_args(&args).expect("valid arguments"))
}

#[test]
fn plumtree_delivers_everything_in_order_with_little_redundancy() {
    // The warm-up runs past crossing's dense phase (10 shuffle intervals
    // after the joins), whose link swaps keep re-shaping the trees.
    let r = run("--nodes 1000 --messages 100 --warmup 16 --fail 0.5 --seed 3");
    let d = serde_json::to_string_pretty(&r).expect("report serialises");
    let phase = |name: &str| {
        r.phases
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {name} phase in {d}"))
    };
    let stable = phase("stable");
    // Stable overlay: every message reaches every node, on a tree.
    assert_eq!(stable.live_nodes, 1000, "{d}");
    assert_eq!(stable.fully_delivered, 100, "{d}");
    assert!(stable.rmr <= 0.1, "stable rmr {} in {d}", stable.rmr);
    // Per-origin trees: paths near the shortest, within the 2 ×
    // (seeds 1-5 measure 1.68-1.76 ×; the shared tree alone is at 5 ×).
    let asp = r.overlay_stable.avg_shortest_path.expect("connected");
    assert!(
        stable.ldh.mean <= 2.0 * asp,
        "ldh {} asp {asp}: {d}",
        stable.ldh.mean
    );
    // Half the nodes killed: the tree repairs while the views do, and the
    // messages sent right at the kill reach >= 99 % of the survivors. On
    // this seed the first two reached a single node, all of whose other
    // links were dead, until its new neighbours were told of them on
    // NeighborUp (`catch_up_window`); so do messages of an origin whose
    // own neighbours are all dead ...
    let failure = phase("failure");
    assert_eq!(failure.live_nodes, 500, "{d}");
    assert!(failure.delivery.mean >= 0.99, "{d}");
    // ... and once the views have repaired, everything reaches everyone.
    assert_eq!(phase("repaired").fully_delivered, 100, "{d}");
    assert_eq!(r.fifo_violations, 0, "{d}");
}

#[test]
fn flags_are_checked() {
    for bad in [
        "--nodes 1",
        "--messages 0",
        "--fail 1",
        "--threshold 0",
        "--graft-timeout 0",
        "--settle-rounds -1",
        "--bogus 1",
        "--nodes",
    ] {
        let args: Vec<&str> = bad.split_whitespace().collect();
        assert!(parse_broadcast_args(&args).is_err(), "{bad} accepted");
    }
    let args = ["--threshold", "none", "--origins", "0"];
    let p = parse_broadcast_args(&args).expect("valid");
    assert_eq!((p.threshold, p.origins), (None, 0));
}

#[test]
fn the_binary_reports_the_documented_keys() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hyparview-sim"))
        .args([
            "broadcast",
            "--nodes",
            "40",
            "--messages",
            "5",
            "--warmup",
            "1",
        ])
        .args(["--fail", "0.25", "--json"])
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
    for key in ["delivery", "rmr", "ldh", "latency_ms"] {
        for phase in ["warmup", "stable", "failure", "repaired"] {
            assert!(
                v[key].get(phase).is_some(),
                "missing {key}.{phase} in {text}"
            );
        }
    }
    assert_eq!(v["fifo_violations"], 0, "{text}");
    for key in ["avg_shortest_path", "mean_eccentricity", "shared_tree_ldh"] {
        assert!(v["overlay_stable"][key].is_number(), "{key} in {text}");
    }
}
