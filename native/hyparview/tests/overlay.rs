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
