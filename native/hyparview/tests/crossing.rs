//! Crossing (issue 12) at one node: a merge NEIGHBOR is refused, and so
//! swaps no link, when its sender was proven in the receiver's component by
//! a SHUFFLE walk; an unproven sender still gets its link, and a failed
//! link voids every proof (the component may have split).
mod common;
use common::*;
use hyparview::{Config, Input, Message, Node, Output};

const EPOCH: u64 = 7;

/// A seed node whose active view is full: a1..a5 asked with high priority.
fn full_node() -> Node {
    let mut n = Node::new(peer("n"), Config::default(), 3).unwrap();
    n.handle(0, Input::Join { contacts: vec![] });
    for i in 1..=5 {
        let a = peer(&format!("a{i}"));
        let m = Message::Neighbor {
            high_priority: true,
            epoch: EPOCH,
            merge: false,
        };
        n.handle(1, msg(&a, m));
    }
    drain(&mut n);
    assert_eq!(n.active_view().len(), 5);
    n
}

/// A SHUFFLE walk started by `origin` reaches `n` through its active peer
/// a1, with a full sample (3 active, 4 passive, the origin).
fn walk_from(n: &mut Node, now: u64, origin: &str) {
    let mut peers: Vec<_> = (1..=7).map(|i| peer(&format!("{origin}-{i}"))).collect();
    peers.push(peer(origin));
    let m = Message::Shuffle {
        origin: peer(origin),
        ttl: 2,
        peers,
    };
    n.handle(now, msg(&peer("a1"), m));
    drain(n);
}

/// `from` asks `n` for a merge link; returns whether `n` accepted.
fn merge_from(n: &mut Node, now: u64, from: &str) -> bool {
    let m = Message::Neighbor {
        high_priority: false,
        epoch: EPOCH + 1,
        merge: true,
    };
    n.handle(now, msg(&peer(from), m));
    drain(n)
        .into_iter()
        .find_map(|o| match o {
            Output::Send {
                to,
                message: Message::NeighborReply { accepted, .. },
            } if to.id == from => Some(accepted),
            _ => None,
        })
        .expect("a merge NEIGHBOR is answered")
}

fn holds(n: &Node, id: &str) -> bool {
    n.active_view().iter().any(|p| p.id == id)
}

#[test]
fn a_merge_from_a_peer_proven_in_the_component_swaps_no_link() {
    let mut n = full_node();
    walk_from(&mut n, 100, "w");
    let before: Vec<String> = n.active_view().iter().map(|p| p.id.to_string()).collect();
    // The origin and the active part of its sample are proven.
    assert!(!merge_from(&mut n, 200, "w"));
    assert!(!merge_from(&mut n, 200, "w-2"));
    let after: Vec<String> = n.active_view().iter().map(|p| p.id.to_string()).collect();
    assert_eq!(before, after, "no link swapped");
    // A passive entry of the sample is not proven: merged (one eviction).
    assert!(merge_from(&mut n, 200, "w-5"));
    assert!(holds(&n, "w-5"));
    assert_eq!(n.active_view().len(), 5);
    check_invariants(&n);
}

#[test]
fn a_proof_expires_and_a_failed_link_voids_it() {
    let interval = Config::default().shuffle_interval;
    let mut n = full_node();
    walk_from(&mut n, 100, "w");
    walk_from(&mut n, 100, "v");
    // Four shuffle intervals later the proof no longer counts.
    assert!(merge_from(&mut n, 101 + 4 * interval, "w"));
    // A lost active link: the component may have split, every proof goes.
    let lost = n
        .active_view()
        .into_iter()
        .find(|p| p.id != "w")
        .cloned()
        .expect("full");
    n.handle(200, Input::ConnectionLost { peer: lost });
    drain(&mut n);
    assert!(merge_from(&mut n, 201, "v"));
    check_invariants(&n);
}

/// A short node takes any NEIGHBOR: a proof never costs it a link.
#[test]
fn a_short_node_accepts_a_merge_even_from_a_proven_peer() {
    let mut n = full_node();
    walk_from(&mut n, 100, "w");
    let a5 = peer("a5");
    n.handle(150, Input::ConnectionLost { peer: a5 });
    drain(&mut n);
    walk_from(&mut n, 160, "w");
    assert!(merge_from(&mut n, 200, "w"));
    assert!(holds(&n, "w"));
}
