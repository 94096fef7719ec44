//! NEEDS.md item 7: a partition cut right after the first convergence of a
//! small overlay, before shuffles filled the passive views. Each side must
//! end up as one component: a short node with no passive candidate probes a
//! contact (or suspect) with a direct SHUFFLE instead of waiting forever.
mod common;
use common::*;
use hyparview::Config;

/// The multinode test's timings (heartbeat-detected failures, fast shuffles).
fn beam_like() -> Config {
    Config {
        active_view_size: 5,
        shuffle_interval: 500,
        promotion_interval: 2_000,
        ..Config::default()
    }
}

/// 8 nodes: n1 is the seed, n2..n5 join through n1, n6..n8 through n1 and n5
/// (as in test/cluster/partition_test.exs). Returns the net right after the
/// joins converged, before the first shuffle.
fn cold_overlay(seed: u64) -> Net {
    let mut net = Net::new(beam_like());
    for i in 1..=8 {
        net.add(&name(i), 1, seed.wrapping_mul(100).wrapping_add(i as u64));
    }
    net.join("n1", &[]);
    for i in 2..=8 {
        let contacts: &[&str] = if i <= 5 { &["n1"] } else { &["n1", "n5"] };
        net.join(&name(i), contacts);
        net.run_for(10);
    }
    net
}

fn side_components(net: &Net, side: &[String]) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    let mut comps = 0;
    for s in side {
        if !seen.insert(s.clone()) {
            continue;
        }
        comps += 1;
        let mut stack = vec![s.clone()];
        while let Some(x) = stack.pop() {
            for p in net.nodes[&x].active_view() {
                if side.iter().any(|s| p.id == *s) && seen.insert(p.id.to_string()) {
                    stack.push(p.id.to_string());
                }
            }
        }
    }
    comps
}

fn dump(net: &Net) -> String {
    let mut s = String::new();
    for (id, n) in &net.nodes {
        let ids = |v: Vec<&hyparview::Peer>| v.iter().map(|p| p.id.to_string()).collect::<Vec<_>>();
        s += &format!(
            "{id}: active {:?} passive {:?} suspects {:?}\n",
            ids(n.active_view()),
            ids(n.passive_view()),
            ids(n.suspected())
        );
    }
    s
}

#[test]
fn cold_partition_leaves_each_side_connected() {
    let a: Vec<String> = (1..=4).map(name).collect();
    let b: Vec<String> = (5..=8).map(name).collect();
    let mut split_at_cut = 0;
    for seed in 0..40 {
        let mut net = cold_overlay(seed);
        assert_eq!(
            net.components(),
            1,
            "seed {seed}: converged\n{}",
            dump(&net)
        );
        net.partition(&a, &b);
        if side_components(&net, &b) > 1 {
            split_at_cut += 1;
        }
        // Bounded: well under rejoin_backoff_max (30 s).
        net.run_for(20_000);
        assert_eq!(
            side_components(&net, &b),
            1,
            "seed {seed}: side B split\n{}",
            dump(&net)
        );
        assert_eq!(
            side_components(&net, &a),
            1,
            "seed {seed}: side A split\n{}",
            dump(&net)
        );
        assert_eq!(net.isolated(), 0, "seed {seed}\n{}", dump(&net));
        assert!(
            net.asymmetric().is_empty(),
            "seed {seed}: {:?}",
            net.asymmetric()
        );
    }
    // The scenario must actually exercise the repair.
    assert!(split_at_cut > 0, "no seed split side B at the cut");
}
