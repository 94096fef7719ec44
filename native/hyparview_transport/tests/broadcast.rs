//! Plumtree broadcast over real overlay connections: every node delivers
//! every other node's broadcasts exactly once, in each origin's order, and
//! payloads beyond `max_frame_size` travel without raising it.

mod common;

use common::*;
use hyparview_transport::{BroadcastError, Event};
use plumtree::Bytes;
use std::collections::HashMap;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// The broadcasts a node delivered so far, per origin, in delivery order.
fn delivered(n: &mut TestNode) -> HashMap<String, Vec<Bytes>> {
    let mut out: HashMap<String, Vec<Bytes>> = HashMap::new();
    for ev in n.events() {
        if let Event::Broadcast { origin, payload } = ev {
            out.entry(origin.to_string()).or_default().push(payload);
        }
    }
    out
}

#[test]
fn every_node_delivers_each_broadcast_once_in_origin_order() {
    let mut nodes = start_overlay("bc", 8);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let mut last = None;
    assert!(
        wait_until(T, || {
            last = overlay_problem(&refs, 5);
            last.is_none()
        }),
        "overlay never became valid: {last:?}"
    );
    let origins = [0usize, 3, 7];
    let per_origin = 50;
    for seq in 0..per_origin {
        for &o in &origins {
            let payload = Bytes::from(format!("{o}:{seq}"));
            nodes[o].server().broadcast(payload).expect("broadcast");
        }
    }
    let want = |o: usize| -> Vec<Bytes> {
        (0..per_origin)
            .map(|seq| Bytes::from(format!("{o}:{seq}")))
            .collect()
    };
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let complete = wait_until(T, || {
        nodes.iter_mut().enumerate().all(|(i, n)| {
            let got = delivered(n);
            origins
                .iter()
                .filter(|&&o| o != i)
                .all(|&o| got.get(&ids[o]).map_or(0, |v| v.len()) >= per_origin)
        })
    });
    assert!(complete, "not every broadcast arrived everywhere");
    for (i, n) in nodes.iter_mut().enumerate() {
        let got = delivered(n);
        // The origin never delivers its own.
        assert!(!got.contains_key(&ids[i]) || !origins.contains(&i));
        for &o in origins.iter().filter(|&&o| o != i) {
            assert_eq!(got[&ids[o]], want(o), "node {i}, origin {o}");
        }
        assert!(n.snap().counters.broadcasts_delivered >= (per_origin * 2) as u64);
    }
    let gossip_out: u64 = nodes
        .iter()
        .map(|n| n.snap().counters.message_out("gossip"))
        .sum();
    assert!(gossip_out >= (origins.len() * per_origin * 7) as u64);
    for n in &mut nodes {
        n.stop();
    }
}

#[test]
fn a_broadcast_larger_than_max_frame_size_arrives_and_too_large_is_refused() {
    let mut a = TestNode::start(options("big_a", vec![]));
    let mut b = TestNode::start(options("big_b", vec![a.contact()]));
    let bid = b.id.clone();
    assert!(wait_until(T, || a.active_ids().contains(&bid)));
    let aid = a.id.clone();
    assert!(wait_until(T, || b.active_ids().contains(&aid)));
    // Four times the protocol frame limit (64 KiB), under the 1 MiB cap.
    let payload = Bytes::from(vec![0xabu8; 256 * 1024]);
    a.server().broadcast(payload.clone()).expect("broadcast");
    let got = b.wait_event(T, |e| matches!(e, Event::Broadcast { .. }));
    assert_eq!(
        got,
        Some(Event::Broadcast {
            origin: a.peer.id.clone(),
            payload
        })
    );
    assert_eq!(b.snap().counters.frames_rejected, 0);
    let too_big = Bytes::from(vec![0u8; (1 << 20) + 1]);
    assert!(matches!(
        a.server().broadcast(too_big),
        Err(BroadcastError::TooLarge { .. })
    ));
    // Still connected: the large frame did not break the link.
    assert!(a.active_ids().contains(&bid));
    a.stop();
    b.stop();
}
