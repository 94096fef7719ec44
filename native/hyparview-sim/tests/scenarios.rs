//! Protocol properties at 1,000 nodes, checked through the simulator.

use hyparview_sim::{parse_args, run, Report};

fn sim(args: &str) -> Report {
    let args: Vec<&str> = args.split_whitespace().collect();
    let params = parse_args(&args).expect("valid arguments");
    run(&params)
}

fn describe(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("report serialises")
}

#[test]
fn stable_overlay_is_connected_symmetric_and_reliable() {
    for seed in [1, 2, 3] {
        check_stable(seed);
    }
}

fn check_stable(seed: u64) {
    let r = sim(&format!("stable --nodes 1000 --seed {seed} --rounds 10"));
    let d = describe(&r);
    assert_eq!(r.live_nodes, 1000, "{d}");
    assert_eq!(r.components, 1, "{d}");
    assert_eq!(r.isolated, 0, "{d}");
    assert_eq!(r.asymmetric_links, 0, "{d}");
    assert_eq!(r.reliability.len(), 11, "{d}");
    assert_eq!(*r.reliability.last().unwrap(), 1.0, "{d}");
    // PeerUp/PeerDown must track the active view exactly.
    assert_eq!(r.peer_event_mismatch, 0, "{d}");
    assert!(r.active_view.max <= 5, "{d}");
}

#[test]
fn half_of_the_nodes_failing_heals_within_two_rounds() {
    for seed in [1, 2, 3] {
        check_failure(seed);
    }
}

fn check_failure(seed: u64) {
    let r = sim(&format!(
        "failure --nodes 1000 --seed {seed} --fail 0.5 --rounds 5"
    ));
    let d = describe(&r);
    assert_eq!(r.live_nodes, 500, "{d}");
    let full = r.rounds_to_full_reliability;
    assert!(full.is_some_and(|i| i <= 2), "{d}");
    assert!(r.reliability[2..].iter().all(|&x| x == 1.0), "{d}");
    assert_eq!(r.components, 1, "{d}");
}

#[test]
fn healed_partition_merges_within_five_rounds() {
    for seed in [1, 2] {
        check_partition(seed);
    }
}

fn check_partition(seed: u64) {
    let r = sim(&format!("partition --nodes 1000 --seed {seed} --rounds 6"));
    let d = describe(&r);
    let comps = r
        .components_per_round
        .as_ref()
        .expect("partition reports components");
    assert_eq!(comps.len(), 7, "{d}");
    // While cut, the two halves cannot be one component.
    assert!(r.reliability[r.rounds] < 0.75, "{d}");
    let merged = r.rounds_to_merge.flatten();
    assert!(merged.is_some_and(|i| i <= 5), "{d}");
    assert_eq!(r.components, 1, "{d}");
}

#[test]
fn churn_leaves_no_node_isolated() {
    for seed in [1, 2, 3] {
        check_churn(seed);
    }
}

fn check_churn(seed: u64) {
    let r = sim(&format!(
        "churn --nodes 1000 --seed {seed} --churn 0.05 --rounds 10"
    ));
    let d = describe(&r);
    assert_eq!(r.churn_joined, Some(500), "{d}");
    assert_eq!(r.live_nodes, 1000, "{d}");
    assert_eq!(r.isolated, 0, "{d}");
}

#[test]
fn long_partition_still_merges() {
    // Long enough for passive views to forget most of the other side.
    let r = sim("partition --nodes 500 --seed 5 --rounds 20");
    let d = describe(&r);
    assert!(r.rounds_to_merge.flatten().is_some_and(|i| i <= 5), "{d}");
    assert_eq!(r.isolated, 0, "{d}");
}

#[test]
#[ignore = "FINDINGS.md F1: fails until idle retirement no longer races Neighbor round trips"]
fn high_latency_churn_keeps_links_symmetric() {
    let r = sim("churn --nodes 1000 --seed 1 --latency-min 200 --latency-max 1500");
    let d = describe(&r);
    // A few links may be mid-handshake at the sampling instant.
    assert!(r.asymmetric_links <= 10, "{d}");
}

#[test]
fn same_seed_same_report() {
    let strip = |r: &Report| {
        let mut v = serde_json::to_value(r).expect("report serialises");
        v.as_object_mut().expect("object").remove("wall_ms");
        v
    };
    let a = sim("churn --nodes 300 --seed 9 --rounds 4");
    let b = sim("churn --nodes 300 --seed 9 --rounds 4");
    assert_eq!(strip(&a), strip(&b));
    // And the seed matters (guards against a test that passes trivially).
    let c = sim("churn --nodes 300 --seed 10 --rounds 4");
    assert_ne!(strip(&a), strip(&c));
}
