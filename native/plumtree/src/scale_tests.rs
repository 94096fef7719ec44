//! Measurements at scale on the deterministic [`crate::testing::Net`]: RMR,
//! last delivery hop against the graph's average shortest path, and repair
//! after killing a fraction of the nodes. The big runs are `#[ignore]`d:
//! `cargo test --release -p plumtree -- --ignored --nocapture`.

use crate::testing::{Net, NodeId};
use crate::{Config, MessageId, Round};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// What one phase of broadcasts measured.
#[derive(Clone, Debug)]
pub(crate) struct Phase {
    pub rmr: f64,
    /// Mean and least fraction of the other live nodes reached per message.
    pub delivery: (f64, f64),
    /// Mean and largest last delivery hop.
    pub ldh: (f64, Round),
}

/// Average hop distance between live nodes (BFS from up to `sources`
/// nodes), and the mean eccentricity of those sources.
pub(crate) fn shortest_paths(net: &Net, sources: usize) -> (f64, f64) {
    let live = net.live_nodes();
    let adjacency = net.adjacency();
    let step = (live.len() / sources.max(1)).max(1);
    let (mut sum, mut pairs, mut ecc, mut count) = (0u64, 0u64, 0u64, 0u64);
    for &source in live.iter().step_by(step) {
        let mut seen = BTreeSet::from([source]);
        let mut queue = VecDeque::from([(source, 0u64)]);
        let mut far = 0;
        while let Some((n, d)) = queue.pop_front() {
            sum += d;
            pairs += u64::from(d > 0);
            far = far.max(d);
            for &p in &adjacency[&n] {
                if seen.insert(p) {
                    queue.push_back((p, d + 1));
                }
            }
        }
        ecc += far;
        count += 1;
    }
    (sum as f64 / pairs as f64, ecc as f64 / count as f64)
}

/// Each live node's connected part, and each part's size.
fn components(net: &Net) -> (HashMap<NodeId, usize>, Vec<usize>) {
    let adjacency = net.adjacency();
    let mut part = HashMap::new();
    let mut sizes = Vec::new();
    for start in net.live_nodes() {
        if part.contains_key(&start) {
            continue;
        }
        let label = sizes.len();
        let mut queue = VecDeque::from([start]);
        part.insert(start, label);
        let mut size = 0;
        while let Some(n) = queue.pop_front() {
            size += 1;
            for &p in &adjacency[&n] {
                if let std::collections::hash_map::Entry::Vacant(e) = part.entry(p) {
                    e.insert(label);
                    queue.push_back(p);
                }
            }
        }
        sizes.push(size);
    }
    (part, sizes)
}

/// `count` broadcasts `spacing` ms apart from origins drawn from `origins`
/// (live ones only), then `settle` ms of quiet; measured over live nodes.
pub(crate) fn phase(
    net: &mut Net,
    rng: &mut SmallRng,
    origins: &[NodeId],
    count: usize,
    spacing: u64,
    settle: u64,
) -> Phase {
    let live: Vec<NodeId> = origins.iter().copied().filter(|&o| net.alive(o)).collect();
    let before = net.total(|s| s.gossip_received);
    let marks: Vec<usize> = net.deliveries.iter().map(Vec::len).collect();
    let ids: Vec<MessageId<NodeId>> = (0..count)
        .map(|i| {
            let origin = live[rng.gen_range(0..live.len())];
            let id = net.broadcast(origin, format!("m{i}").as_bytes());
            net.run_for(spacing);
            id
        })
        .collect();
    net.run_for(settle);
    let nodes = net.live_nodes();
    // Killing nodes can cut some off (the test network does not repair
    // views the way HyParView does): measure within the origin's part.
    let part = components(net);
    let mut reached: HashMap<&MessageId<NodeId>, (u64, Round)> =
        ids.iter().map(|id| (id, (0, 0))).collect();
    for &node in &nodes {
        for d in &net.deliveries[node as usize][marks[node as usize]..] {
            if let Some(entry) = reached.get_mut(&d.id) {
                entry.0 += 1;
                entry.1 = entry.1.max(d.hops);
            }
        }
    }
    let others = |id: &MessageId<NodeId>| (part.1[part.0[&id.origin]] - 1) as f64;
    // An origin cut off alone reaches nobody, and nobody is missing.
    let fractions: Vec<f64> = ids
        .iter()
        .filter(|id| others(id) > 0.0)
        .map(|id| reached.get(id).map_or(0.0, |r| r.0 as f64 / others(id)))
        .collect();
    let expected: f64 = ids.iter().map(others).sum();
    let hops: Vec<Round> = ids
        .iter()
        .map(|id| reached.get(id).map_or(0, |r| r.1))
        .collect();
    let received = net.total(|s| s.gossip_received) - before;
    Phase {
        rmr: received as f64 / expected - 1.0,
        delivery: (
            fractions.iter().sum::<f64>() / fractions.len() as f64,
            fractions.iter().cloned().fold(1.0, f64::min),
        ),
        ldh: (
            hops.iter().map(|&h| f64::from(h)).sum::<f64>() / count as f64,
            hops.iter().copied().max().unwrap_or(0),
        ),
    }
}

/// A run: warm-up, a stable phase, then (for each kill fraction) the kill
/// and `repairs` phases. Returns (average shortest path, mean origin
/// eccentricity, stable phase, phases after each kill).
pub(crate) struct Run {
    pub asp: f64,
    pub eccentricity: f64,
    pub stable: Phase,
    /// Average shortest path among the survivors.
    pub asp_after: f64,
    pub after_kill: Vec<Phase>,
}

pub(crate) fn run(
    nodes: usize,
    origins: usize,
    kill: f64,
    config: Config,
    seed: u64,
    per_phase: usize,
) -> Run {
    let mut net = Net::random(nodes, 2, (1, 10), seed, config);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xabc);
    let mut chosen = BTreeSet::new();
    while chosen.len() < origins.min(nodes) {
        chosen.insert(rng.gen_range(0..nodes as NodeId));
    }
    let origins: Vec<NodeId> = chosen.into_iter().collect();
    // Warm-up: every origin's first messages shape the trees.
    phase(&mut net, &mut rng, &origins, per_phase, 20, 3_000);
    phase(&mut net, &mut rng, &origins, per_phase, 20, 3_000);
    let stable = phase(&mut net, &mut rng, &origins, per_phase, 20, 3_000);
    let (asp, eccentricity) = shortest_paths(&net, 100);
    let mut after_kill = Vec::new();
    let mut asp_after = asp;
    if kill > 0.0 {
        let mut dead = BTreeSet::new();
        while (dead.len() as f64) < kill * nodes as f64 {
            let victim = rng.gen_range(0..nodes as NodeId);
            if dead.insert(victim) {
                net.kill(victim);
            }
        }
        asp_after = shortest_paths(&net, 100).0;
        for _ in 0..4 {
            after_kill.push(phase(&mut net, &mut rng, &origins, per_phase, 20, 3_000));
        }
    }
    net.assert_at_most_once_in_order();
    Run {
        asp,
        eccentricity,
        stable,
        asp_after,
        after_kill,
    }
}

fn report(label: &str, r: &Run) {
    let p = |p: &Phase| {
        format!(
            "rmr {:.3} ldh {:.1}/{} delivery {:.4}/{:.4}",
            p.rmr, p.ldh.0, p.ldh.1, p.delivery.0, p.delivery.1
        )
    };
    println!(
        "{label}: asp {:.2} ecc {:.1} | stable {} | after (asp {:.2}): {}",
        r.asp,
        r.eccentricity,
        p(&r.stable),
        r.asp_after,
        r.after_kill.iter().map(p).collect::<Vec<_>>().join(" ; ")
    );
}

fn with_threshold(threshold: Option<Round>) -> Config {
    Config {
        optimization_threshold: threshold,
        ..Config::default()
    }
}

fn sweep(nodes: usize, origin_counts: &[usize], thresholds: &[Option<Round>], kills: &[f64]) {
    for &origins in origin_counts {
        for &threshold in thresholds {
            for &kill in kills {
                let r = run(nodes, origins, kill, with_threshold(threshold), 1, 300);
                report(
                    &format!("n {nodes} origins {origins} threshold {threshold:?} kill {kill}"),
                    &r,
                );
            }
        }
    }
}

#[test]
#[ignore = "measurement: run with --release --ignored --nocapture"]
fn measure_10000_nodes() {
    sweep(10_000, &[100], &[Some(2), None], &[0.5, 0.2]);
}

#[test]
#[ignore = "measurement: run with --release --ignored --nocapture"]
fn measure_1000_nodes() {
    sweep(1000, &[1000, 100, 10], &[Some(2), None], &[0.2, 0.5]);
}

#[test]
#[ignore = "measurement: run with --release --ignored --nocapture"]
fn measure_settling_after_failures_100_nodes() {
    for threshold in [Some(1), Some(2), Some(3)] {
        let nodes = 100;
        let mut net = Net::random(nodes, 2, (1, 5), 7, with_threshold(threshold));
        let mut rng = SmallRng::seed_from_u64(1);
        let all: Vec<NodeId> = (0..nodes as NodeId).collect();
        phase(&mut net, &mut rng, &all, 20, 100, 2_000);
        for victim in [1, 11, 19, 27, 35, 43, 67, 83, 91, 95] {
            net.kill(victim);
        }
        let mut out = Vec::new();
        for _ in 0..10 {
            let g = net.total(|s| s.grafts_sent);
            let o = net.total(|s| s.optimizations);
            let p = phase(&mut net, &mut rng, &all, 200, 20, 2_000);
            out.push(format!(
                "{:.3}/{}/{}",
                p.rmr,
                net.total(|s| s.grafts_sent) - g,
                net.total(|s| s.optimizations) - o
            ));
        }
        // rmr / grafts / optimisations per phase of 200 broadcasts.
        println!("{threshold:?}: {}", out.join(" "));
    }
}
