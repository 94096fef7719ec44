//! Whole-network properties, on the deterministic [`crate::testing::Net`].

use crate::testing::{Net, NodeId};
use crate::{Config, Event, Message, MessageId, SkipReason};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, VecDeque};

fn payload(i: usize) -> Vec<u8> {
    format!("message {i}").into_bytes()
}

/// `count` broadcasts from random live origins, `spacing` ms apart.
fn broadcast_many(
    net: &mut Net,
    rng: &mut SmallRng,
    count: usize,
    spacing: u64,
) -> Vec<MessageId<NodeId>> {
    let live = net.live_nodes();
    (0..count)
        .map(|i| {
            let origin = live[rng.gen_range(0..live.len())];
            let id = net.broadcast(origin, &payload(i));
            net.run_for(spacing);
            id
        })
        .collect()
}

#[test]
fn stable_network_delivers_everything_once_in_order_with_rmr_near_zero() {
    let nodes = 100;
    let mut net = Net::random(nodes, 2, (5, 30), 7, Config::default());
    let mut rng = SmallRng::seed_from_u64(1);
    // Warm-up: the first broadcasts flood every link and prune the
    // redundant ones (paper §4.2); then the tree is stable.
    let mut ids = broadcast_many(&mut net, &mut rng, 20, 100);
    net.run_for(5_000);
    let before = net.total(|s| s.gossip_received);
    let measured = broadcast_many(&mut net, &mut rng, 200, 20);
    net.run_for(5_000);
    let received = net.total(|s| s.gossip_received) - before;
    ids.extend(measured.iter().cloned());
    net.assert_exactly_once_in_order(&ids);
    let rmr = Net::rmr(received, measured.len() as u64, nodes as u64);
    println!("rmr {rmr:.4} over {} messages", measured.len());
    assert!(rmr < 0.05, "rmr {rmr}");
    assert_eq!(net.total(|s| s.gap_skipped), 0);
}

#[test]
fn a_single_origin_uses_a_tree_no_deeper_than_twice_the_shortest_paths() {
    let nodes = 200;
    let mut net = Net::random(nodes, 2, (10, 10), 3, Config::default());
    for i in 0..10 {
        net.broadcast(0, &payload(i));
        net.run_for(1_000);
    }
    let before = net.total(|s| s.gossip_received);
    let id = net.broadcast(0, b"measured");
    net.run_for(5_000);
    let received = net.total(|s| s.gossip_received) - before;
    let rmr = Net::rmr(received, 1, nodes as u64);
    let hops: Vec<u32> = net
        .deliveries
        .iter()
        .flatten()
        .filter(|d| d.id == id)
        .map(|d| d.hops)
        .collect();
    assert_eq!(hops.len(), nodes - 1);
    let ldh = *hops.iter().max().unwrap();
    let diameter = eccentricity(&net, 0);
    println!("rmr {rmr:.4}, last delivery hop {ldh}, eccentricity of the origin {diameter}");
    assert_eq!(rmr, 0.0);
    assert!(ldh <= 2 * diameter, "ldh {ldh} vs eccentricity {diameter}");
}

/// Largest hop distance from `origin` over live links.
fn eccentricity(net: &Net, origin: NodeId) -> u32 {
    reachable(net, origin)
        .into_iter()
        .map(|(_, d)| d)
        .max()
        .unwrap_or(0)
}

fn reachable(net: &Net, origin: NodeId) -> Vec<(NodeId, u32)> {
    let mut seen = BTreeSet::from([origin]);
    let mut queue = VecDeque::from([(origin, 0)]);
    let mut out = Vec::new();
    while let Some((n, d)) = queue.pop_front() {
        out.push((n, d));
        for p in net.neighbors(n) {
            if seen.insert(p) {
                queue.push_back((p, d + 1));
            }
        }
    }
    out
}

#[test]
fn the_tree_repairs_after_a_fifth_of_the_nodes_die() {
    let nodes = 80;
    let mut net = Net::random(nodes, 3, (5, 30), 11, Config::default());
    let mut rng = SmallRng::seed_from_u64(2);
    broadcast_many(&mut net, &mut rng, 20, 50);
    net.run_for(3_000);
    let mut dead = BTreeSet::new();
    while dead.len() < nodes / 5 {
        let victim = rng.gen_range(1..nodes as NodeId);
        if dead.insert(victim) {
            net.kill(victim);
        }
    }
    // Broadcast from node 0 while the failures are still undetected: eager
    // pushes into dead nodes are lost, and their subtrees must graft
    // through lazy links (paper §4.3).
    let grafts_before = net.total(|s| s.grafts_sent);
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(net.broadcast(0, &payload(i)));
        net.run_for(20);
    }
    net.run_for(10_000);
    let component: BTreeSet<NodeId> = reachable(&net, 0).into_iter().map(|(n, _)| n).collect();
    assert!(
        component.len() > nodes * 3 / 4 - 5,
        "survivors mostly connected"
    );
    for &node in component.iter().filter(|&&n| n != 0) {
        let got: Vec<u64> = net.deliveries[node as usize]
            .iter()
            .filter(|d| ids.contains(&d.id))
            .map(|d| d.id.seq)
            .collect();
        let want: Vec<u64> = ids.iter().map(|id| id.seq).collect();
        assert_eq!(got, want, "node {node}");
    }
    assert!(
        net.total(|s| s.grafts_sent) > grafts_before,
        "repair used grafts"
    );
    assert_eq!(net.total(|s| s.gap_skipped), 0);
}

#[test]
fn a_lost_eager_push_is_grafted_from_a_lazy_announcer() {
    let mut net = Net::empty(3, 1, Config::default());
    net.connect(0, 1, 10);
    net.connect(1, 2, 10);
    net.connect(0, 2, 10);
    for i in 0..3 {
        net.broadcast(0, &payload(i));
        net.run_for(500);
    }
    // 1-2 carried duplicates and is lazy now; 0 pushes to both.
    assert_eq!(
        net.node(2).eager_peers().cloned().collect::<Vec<_>>(),
        vec![0]
    );
    net.filter = Some(Box::new(|from, to, m| {
        from == 0 && to == 2 && matches!(m, Message::Gossip(g) if g.id.seq == 3)
    }));
    let id = net.broadcast(0, b"lost on 0-2");
    net.run_for(2_000);
    assert_eq!(net.lost, 1);
    assert_eq!(net.node(2).stats().grafts_sent, 1);
    let got = net.deliveries[2]
        .iter()
        .find(|d| d.id == id)
        .expect("grafted");
    let config = Config::default();
    assert!(got.at >= config.ihave_interval + config.graft_timeout_1);
    // Broadcast at 1500; IHAVE from 1 by 1500 + 10 + ihave_interval + 10;
    // graft after timeout1 plus at most 50 % jitter; reply in one round trip.
    let latest = 1_500 + 20 + config.ihave_interval + config.graft_timeout_1 * 3 / 2 + 20;
    assert!(got.at <= latest, "{} > {latest}", got.at);
    // 2 grafted 1, so 1-2 is eager both ways until a duplicate prunes it.
    assert!(net.node(2).eager_peers().any(|&p| p == 1));
}

#[test]
fn an_unrepairable_gap_is_skipped_after_gap_timeout_and_delivery_resumes() {
    let config = Config::default();
    let mut net = Net::empty(3, 1, config.clone());
    net.connect(0, 1, 10);
    net.connect(1, 2, 10);
    // seq 1 is lost on every link: nobody can ever graft it.
    net.filter = Some(Box::new(
        |_, _, m| matches!(m, Message::Gossip(g) if g.id.seq == 1),
    ));
    let ids: Vec<_> = (0..3)
        .map(|i| {
            let id = net.broadcast(0, &payload(i));
            net.run_for(10);
            id
        })
        .collect();
    net.run_for(config.gap_timeout + 1_000);
    let late = net.broadcast(0, b"after the gap");
    net.run_for(100);
    for node in [1, 2] {
        let got: Vec<_> = net.deliveries[node]
            .iter()
            .map(|d| (d.id.seq, d.at))
            .collect();
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            vec![0, 2, 3],
            "node {node}"
        );
        // seq 2 arrived at 20 + 10·node and waited exactly gap_timeout.
        assert_eq!(got[1].1, 20 + 10 * node as u64 + config.gap_timeout);
        assert!(net.events.contains(&(
            node as NodeId,
            Event::GapSkipped {
                origin: 0,
                incarnation: ids[1].incarnation,
                first_seq: 1,
                count: 1,
                reason: SkipReason::Timeout,
            }
        )));
        assert_eq!(net.deliveries[node].last().unwrap().id, late);
    }
    assert_eq!(net.total(|s| s.gap_skipped), 2);
}

#[test]
fn memory_stays_bounded_under_a_flood() {
    let config = Config {
        cache_max_messages: 64,
        cache_max_bytes: 64 * 1024,
        max_broadcast_size: 1024,
        max_buffered_bytes: 8 * 1024,
        ..Config::default()
    };
    let mut net = Net::random(20, 2, (1, 5), 5, config.clone());
    let mut rng = SmallRng::seed_from_u64(9);
    broadcast_many(&mut net, &mut rng, 2_000, 1);
    net.run_for(3_000);
    // The cache is far too small to repair everything at this rate, so
    // gaps are skipped; what is delivered is still in order, at most once.
    net.assert_at_most_once_in_order();
    assert!(net.total(|s| s.gap_skipped) > 0);
    for node in net.live_nodes() {
        let m = net.node(node).memory();
        assert!(
            m.cached_messages <= 64 && m.cached_bytes <= 64 * 1024,
            "{m:?}"
        );
        assert!(
            m.buffered_bytes <= 8 * 1024 && m.missing <= config.max_missing,
            "{m:?}"
        );
    }
    // Idle long enough for the age bound: the caches empty themselves.
    net.run_for(config.cache_max_age + 1_000);
    for node in net.live_nodes() {
        assert_eq!(net.node(node).memory().cached_messages, 0);
    }
}

/// The shared tree alone (no optimisation, so no origin gets a tree of
/// its own): see the next test with the optimisation.
#[test]
fn after_failures_concurrent_broadcasts_converge_back_to_a_spanning_tree() {
    let nodes = 100;
    let mut net = Net::random(nodes, 2, (1, 5), 7, Config::default());
    let mut rng = SmallRng::seed_from_u64(1);
    broadcast_many(&mut net, &mut rng, 20, 100);
    net.run_for(2_000);
    for victim in [1, 11, 19, 27, 35, 43, 67, 83, 91, 95] {
        net.kill(victim);
    }
    let live = net.live_nodes();
    assert_eq!(reachable(&net, 0).len(), live.len(), "survivors connected");
    // 50 broadcasts a second from random origins, so several are always in
    // flight while the tree repairs (the case that needs batched grafts,
    // see `Plumtree::also_announced_by`).
    let mut phases = Vec::new();
    for _ in 0..4 {
        let before = net.total(|s| s.gossip_received);
        let grafts = net.total(|s| s.grafts_sent);
        let ids = broadcast_many(&mut net, &mut rng, 200, 20);
        net.run_for(2_000);
        net.assert_exactly_once_in_order(&ids);
        let rmr = Net::rmr(
            net.total(|s| s.gossip_received) - before,
            200,
            live.len() as u64,
        );
        phases.push((rmr, net.total(|s| s.grafts_sent) - grafts));
    }
    println!("(rmr, grafts) per phase of 200 broadcasts: {phases:?}");
    assert!(phases[0].0 < 0.1, "{phases:?}");
    assert_eq!(phases[3], (0.0, 0), "{phases:?}");
    assert_eq!(net.total(|s| s.gap_skipped), 0);
    // Every eager link is eager at both ends and they form a spanning tree.
    let mut eager_links = 0;
    for &a in &live {
        for &b in net.node(a).eager_peers() {
            assert!(
                net.node(b).eager_peers().any(|&x| x == a),
                "{a}-{b} one-sided"
            );
            eager_links += 1;
        }
    }
    assert_eq!(eager_links, 2 * (live.len() - 1));
}

/// With the optimisation every origin's tree re-optimises
/// after the failures: it takes longer than the shared tree alone (about
/// fifteen messages per origin here, 90 origins) but settles to no redundancy,
/// no grafts, and a tree spanning the survivors per origin.
#[test]
fn after_failures_every_origins_tree_converges_back_to_a_spanning_tree() {
    let nodes = 100;
    let config = Config {
        optimization_threshold: Some(2),
        ..Config::default()
    };
    let mut net = Net::random(nodes, 2, (1, 5), 7, config);
    let mut rng = SmallRng::seed_from_u64(1);
    broadcast_many(&mut net, &mut rng, 20, 100);
    net.run_for(2_000);
    for victim in [1, 11, 19, 27, 35, 43, 67, 83, 91, 95] {
        net.kill(victim);
    }
    let live = net.live_nodes();
    assert_eq!(reachable(&net, 0).len(), live.len(), "survivors connected");
    let mut phases = Vec::new();
    for _ in 0..12 {
        let before = net.total(|s| s.gossip_received);
        let grafts = net.total(|s| s.grafts_sent);
        let ids = broadcast_many(&mut net, &mut rng, 200, 20);
        net.run_for(2_000);
        net.assert_exactly_once_in_order(&ids);
        let rmr = Net::rmr(
            net.total(|s| s.gossip_received) - before,
            200,
            live.len() as u64,
        );
        phases.push((rmr, net.total(|s| s.grafts_sent) - grafts));
    }
    println!("(rmr, grafts) per phase of 200 broadcasts: {phases:?}");
    assert!(phases[0].0 < 0.1, "{phases:?}");
    assert_eq!(phases[11], (0.0, 0), "{phases:?}");
    assert_eq!(net.total(|s| s.gap_skipped), 0);
    // Each origin's tree spans the survivors. (Trees are directed: a child
    // may keep its parent lazy while the parent pushes to it.)
    for &origin in &live {
        let mut seen = BTreeSet::from([origin]);
        let mut queue = VecDeque::from([origin]);
        while let Some(a) = queue.pop_front() {
            for &b in net.node(a).eager_peers_for(&origin) {
                if seen.insert(b) {
                    queue.push_back(b);
                }
            }
        }
        assert_eq!(seen.len(), live.len(), "origin {origin}");
    }
}

/// 0 - 1 and 2 - 3 are apart when 0 broadcasts; then 1 - 2 comes up.
fn late_link(config: Config) -> (Net, MessageId<NodeId>) {
    let mut net = Net::empty(4, 1, config);
    net.connect(0, 1, 10);
    net.connect(2, 3, 10);
    let id = net.broadcast(0, b"before the link");
    net.run_for(1_000);
    net.connect(1, 2, 10);
    net.run_for(3_000);
    (net, id)
}

#[test]
fn a_message_reaches_the_nodes_behind_a_link_that_came_up_after_it() {
    let (net, id) = late_link(Config::default());
    for node in [2, 3] {
        let got: Vec<_> = net.deliveries[node].iter().map(|d| &d.id).collect();
        assert_eq!(got, vec![&id], "node {node}");
    }
    // 2 grafted it from 1 once (the catch-up IHAVE); 3 got it eagerly.
    assert_eq!(net.node(2).stats().grafts_sent, 1);
    assert_eq!(net.node(3).stats().grafts_sent, 0);
    // Without catch-up nobody would ever tell 2 and 3 of it.
    let off = Config {
        catch_up_window: 0,
        ..Config::default()
    };
    let (net, _) = late_link(off);
    assert!(net.deliveries[2].is_empty() && net.deliveries[3].is_empty());
}
