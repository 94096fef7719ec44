//! Whole-overlay behaviour on the in-test network.
mod common;
use common::*;
use hyparview::Config;

#[test]
fn cluster_forms_connected_symmetric_overlay() {
    let mut net = Net::cluster(Config::default(), 60, 1);
    net.run_for(60_000);
    assert_eq!(net.components(), 1);
    assert_eq!(net.isolated(), 0);
    assert!(net.asymmetric().is_empty(), "{:?}", net.asymmetric());
    let full = net
        .alive()
        .iter()
        .filter(|a| net.nodes[*a].active_view().len() >= 3)
        .count();
    assert!(full >= 55, "most nodes have several neighbors: {full}");
    let with_passive = net
        .alive()
        .iter()
        .filter(|a| net.nodes[*a].passive_view().len() >= 10)
        .count();
    assert!(
        with_passive >= 50,
        "shuffles fill passive views: {with_passive}"
    );
}

#[test]
fn survives_half_of_nodes_failing() {
    let mut net = Net::cluster(Config::default(), 100, 2);
    net.run_for(60_000);
    for i in (0..100).step_by(2) {
        net.kill(&name(i));
    }
    net.run_for(20_000);
    assert_eq!(net.components(), 1);
    assert_eq!(net.isolated(), 0);
    assert!(net.asymmetric().is_empty(), "{:?}", net.asymmetric());
}

#[test]
fn healed_partition_merges() {
    let cfg = Config::default();
    let mut net = Net::cluster(cfg.clone(), 100, 3);
    net.run_for(60_000);
    let all = net.alive();
    let (l, r) = all.split_at(50);
    let (l, r) = (l.to_vec(), r.to_vec());
    net.partition(&l, &r);
    net.run_for(300_000);
    assert_eq!(net.components(), 2, "partition splits the overlay");
    assert_eq!(net.isolated(), 0);
    net.heal();
    // Within 5 shuffle rounds of the heal.
    net.run_for(5 * cfg.shuffle_interval);
    assert_eq!(net.components(), 1);
    assert!(net.asymmetric().is_empty(), "{:?}", net.asymmetric());
}

#[test]
fn churn_leaves_no_isolated_nodes() {
    let mut net = Net::cluster(Config::default(), 100, 4);
    net.run_for(60_000);
    let mut next = 100;
    for round in 0..10 {
        // 5% of nodes crash, as many new ones join.
        for k in 0..5 {
            let victim = name((round * 7 + k * 13) % next);
            if !net.dead.contains(&victim) {
                net.kill(&victim);
            }
        }
        for _ in 0..5 {
            let id = name(next);
            net.add(&id, 1, next as u64);
            let contact = net.alive()[round % 50].clone();
            net.join(&id, &[&contact]);
            next += 1;
        }
        net.run_for(10_000);
    }
    net.run_for(20_000);
    assert_eq!(net.isolated(), 0);
    assert_eq!(net.components(), 1);
    assert!(net.asymmetric().is_empty(), "{:?}", net.asymmetric());
}
