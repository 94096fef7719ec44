//! Diagnosis: are asymmetric active-view links at the end of a run transient
//! (a NeighborReply in flight) or persistent? Steps the final state forward
//! with no further churn and tracks the same pairs.
//!
//!     cargo run --release -p hyparview-sim --example asym -- churn --latency-min 200 --latency-max 1500

use hyparview_sim::{parse_args, run_keep};

// The integration tests' helpers: one definition of an asymmetric pair.
#[path = "../tests/common/mod.rs"]
mod common;
use common::asymmetric_pairs;

/// Members of every component but the largest, by node index.
fn small_components(sim: &hyparview_sim::Sim) -> Vec<Vec<u32>> {
    let live = sim.live_nodes();
    let mut comp = vec![usize::MAX; sim.nodes.len()];
    let mut comps: Vec<Vec<u32>> = Vec::new();
    for &s in &live {
        if comp[s as usize] != usize::MAX {
            continue;
        }
        let id = comps.len();
        let mut members = vec![s];
        comp[s as usize] = id;
        let mut k = 0;
        while k < members.len() {
            let u = members[k];
            k += 1;
            let mut nb = sim.active_indices(u);
            nb.extend(
                live.iter()
                    .copied()
                    .filter(|&v| sim.active_indices(v).contains(&u)),
            );
            for v in nb {
                if sim.is_alive(v) && comp[v as usize] == usize::MAX {
                    comp[v as usize] = id;
                    members.push(v);
                }
            }
        }
        comps.push(members);
    }
    comps.sort_by_key(|c| std::cmp::Reverse(c.len()));
    comps.into_iter().skip(1).collect()
}

fn print_small(sim: &hyparview_sim::Sim) {
    let small = small_components(sim);
    if !small.is_empty() {
        let mut comp = vec![0usize; sim.nodes.len()];
        for (k, c) in small.iter().enumerate() {
            for &i in c {
                comp[i as usize] = k + 1;
            }
        }
        let live = sim.live_nodes();
        let cross = |i: u32| {
            sim.passive_indices(i)
                .iter()
                .filter(|&&p| sim.is_alive(p) && comp[p as usize] != comp[i as usize])
                .count()
        };
        let knowing = live.iter().filter(|&&i| cross(i) > 0).count();
        println!(
            "components: largest {} + {:?}; live nodes with a passive peer in another component: {}",
            live.len() - small.iter().map(Vec::len).sum::<usize>(),
            small.iter().map(Vec::len).collect::<Vec<_>>(),
            knowing
        );
    }
    for c in small.iter().filter(|c| c.len() <= 5) {
        println!("small component {:?}", c);
        for &i in c.iter() {
            let n = &sim.nodes[i as usize];
            let passive = sim.passive_indices(i);
            println!(
                "  n{i}: active {:?} passive {:?} (live {}) conns {} pending {}",
                sim.active_indices(i),
                passive,
                passive.iter().filter(|&&p| sim.is_alive(p)).count(),
                sim.connection_count(i),
                n.node.pending_requests(),
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut p = parse_args(&args).expect("arguments");
    let trace: Option<(u32, u32)> = std::env::var("TRACE_PAIR").ok().map(|v| {
        let (a, b) = v.split_once(',').expect("TRACE_PAIR=a,b");
        (a.parse().expect("a"), b.parse().expect("b"))
    });
    p.trace_pair = trace;
    let (report, mut sim) = run_keep(&p);
    println!("asymmetric at end: {}", report.structure.asymmetric_links);
    print_small(&sim);
    let first = asymmetric_pairs(&sim);
    for step in 1..=12 {
        let t = sim.now + 5_000;
        sim.run_until(t);
        let now = asymmetric_pairs(&sim);
        let persisting = first.iter().filter(|p| now.contains(p)).count();
        println!(
            "+{:>3} s: asymmetric {:>4}, of the initial ones still asymmetric {:>4}",
            step * 5,
            now.len(),
            persisting
        );
    }
    for &(a, b) in asymmetric_pairs(&sim).iter().take(5) {
        let na = &sim.nodes[a as usize];
        let nb = &sim.nodes[b as usize];
        println!(
            "{} holds {} active; {} holds: active {:?} passive has it: {} conns a={} b={}",
            na.peer.id,
            nb.peer.id,
            nb.peer.id,
            nb.node
                .active_view()
                .iter()
                .map(|p| p.id.to_string())
                .collect::<Vec<_>>(),
            nb.node.passive_view().iter().any(|p| p.id == na.peer.id),
            sim.connection_count(a),
            sim.connection_count(b),
        );
    }
}
