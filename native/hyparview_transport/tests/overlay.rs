//! Several in-process servers on loopback form and repair an overlay.

mod common;

use common::*;
use hyparview_transport::Event;
use std::time::Duration;

const T: Duration = Duration::from_secs(15);

#[test]
fn two_nodes_join() {
    let mut a = TestNode::start(options("join_a", vec![]));
    let mut b = TestNode::start(options("join_b", vec![a.contact()]));
    let (aid, bid) = (a.id.clone(), b.id.clone());
    let up_b = a.wait_event(T, |e| matches!(e, Event::PeerUp(p) if p.id == bid));
    let up_a = b.wait_event(T, |e| matches!(e, Event::PeerUp(p) if p.id == aid));
    // The peer reported up carries the advertised address and incarnation.
    assert_eq!(up_b, Some(Event::PeerUp(b.peer.clone())));
    assert_eq!(up_a, Some(Event::PeerUp(a.peer.clone())));
    assert!(wait_until(T, || a.active_ids().contains(&bid)
        && b.active_ids().contains(&aid)));

    let (sa, sb) = (a.snap(), b.snap());
    assert_eq!(sb.counters.dials, 1);
    assert_eq!(sb.counters.message_out("join"), 1);
    assert_eq!(sa.counters.message_in("join"), 1);
    assert_eq!(sa.counters.connections_accepted, 1);
    // One connection serves both directions.
    assert!(wait_until(T, || a.snap().counters.connections == 1
        && b.snap().counters.connections == 1));
    assert_eq!(sa.listen_port, a.addr().port());
    assert!(sa.running);
    a.stop();
    b.stop();
}

#[test]
fn ten_nodes_form_connected_symmetric_overlay() {
    let nodes = start_overlay("ten", 10);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let mut last = None;
    let ok = wait_until(T, || {
        last = overlay_problem(&refs, 4);
        last.is_none()
    });
    assert!(ok, "overlay never became valid: {last:?}");
    // Passive views fill (the JOIN acceptance already carries a passive
    // sample, so this alone does not prove shuffling) ...
    assert!(wait_until(T, || nodes
        .iter()
        .all(|n| !n.snap().passive_view.is_empty())));
    // ... and periodic SHUFFLEs travel over the wire; on a loaded machine
    // the first shuffle timer may fire only after the views are full.
    let shuffles = || -> u64 {
        nodes
            .iter()
            .map(|n| n.snap().counters.message_in("shuffle"))
            .sum()
    };
    assert!(
        wait_until(T, || shuffles() > 0),
        "no SHUFFLE received: {}",
        dump(&nodes.iter().collect::<Vec<_>>())
    );
    for mut n in nodes {
        n.stop();
    }
}

#[test]
fn stopping_a_node_reports_peer_down_and_views_refill() {
    let mut nodes = start_overlay("fail", 8);
    {
        let refs: Vec<&TestNode> = nodes.iter().collect();
        let mut last = None;
        assert!(
            wait_until(T, || {
                last = overlay_problem(&refs, 4);
                last.is_none()
            }),
            "overlay never became valid: {last:?}"
        );
        // Healing needs passive candidates across any cut the failure makes:
        // let shuffles spread knowledge until every node knows every other.
        assert!(
            wait_until(T, || refs.iter().all(|n| {
                let s = n.snap();
                s.active_view.len() + s.passive_view.len() == refs.len() - 1
            })),
            "shuffles never spread membership: {}",
            dump(&refs)
        );
    }
    let victim = 3;
    let vid = nodes[victim].id.clone();
    let neighbours: Vec<usize> = (0..nodes.len())
        .filter(|&i| i != victim && nodes[i].active_ids().contains(&vid))
        .collect();
    assert!(!neighbours.is_empty());
    nodes[victim].stop();
    let stopped = nodes.remove(victim);
    for &i in &neighbours {
        let i = if i > victim { i - 1 } else { i };
        let vid = vid.clone();
        assert!(
            nodes[i]
                .wait_event(T, |e| matches!(e, Event::PeerDown(p) if p.id == vid))
                .is_some(),
            "{} saw no PeerDown for {vid}",
            nodes[i].id
        );
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let mut last = None;
    assert!(
        wait_until(T, || {
            last = overlay_problem(&refs, 4);
            last.is_none()
        }),
        "overlay did not heal: {last:?}{}",
        dump(&refs)
    );
    let detected: u64 = nodes
        .iter()
        .map(|n| n.snap().counters.failures_detected)
        .sum();
    assert!(detected >= 1);
    drop(stopped);
    for mut n in nodes {
        n.stop();
    }
}

#[test]
fn graceful_leave_disconnects_neighbours() {
    let mut a = TestNode::start(options("leave_a", vec![]));
    let mut b = TestNode::start(options("leave_b", vec![a.contact()]));
    let bid = b.id.clone();
    assert!(a
        .wait_event(T, |e| matches!(e, Event::PeerUp(p) if p.id == bid))
        .is_some());
    b.server().leave();
    assert!(a
        .wait_event(T, |e| matches!(e, Event::PeerDown(p) if p.id == bid))
        .is_some());
    assert!(wait_until(T, || b.snap().active_view.is_empty()));
    assert!(wait_until(T, || b
        .snap()
        .counters
        .message_out("disconnect")
        >= 1));
    a.stop();
    b.stop();
}

#[test]
fn simultaneous_dials_converge_on_one_connection() {
    // Each names the other as contact, so both dial at about the same time.
    let a_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let b_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let a_contact = hyparview::Peer::new("sim_a@127.0.0.1", a_port, 0);
    let b_contact = hyparview::Peer::new("sim_b@127.0.0.1", b_port, 0);
    let mut oa = options("sim_a", vec![b_contact]);
    oa.listen = a_port;
    let mut ob = options("sim_b", vec![a_contact]);
    ob.listen = b_port;
    let mut a = TestNode::start(oa);
    let mut b = TestNode::start(ob);
    assert!(wait_until(T, || {
        a.active_ids().contains(&b.id)
            && b.active_ids().contains(&a.id)
            && a.snap().counters.connections == 1
            && b.snap().counters.connections == 1
    }));
    // The duplicate connection was retired without a PeerDown.
    assert!(!a.events().iter().any(|e| matches!(e, Event::PeerDown(_))));
    assert!(!b.events().iter().any(|e| matches!(e, Event::PeerDown(_))));
    a.stop();
    b.stop();
}

#[test]
fn ipv6_loopback_join() {
    let mut oa = options("v6_a", vec![]);
    oa.id = "v6_a@[::1]".into();
    oa.listen = "[::1]:0".parse().unwrap();
    oa.advertise_ip = "::1".parse().unwrap();
    let mut a = TestNode::start(oa);
    let mut ob = options("v6_b", vec![a.contact()]);
    ob.id = "v6_b@[::1]".into();
    ob.listen = "[::1]:0".parse().unwrap();
    ob.advertise_ip = "::1".parse().unwrap();
    let mut b = TestNode::start(ob);
    let bid = b.id.clone();
    let up = a.wait_event(T, |e| matches!(e, Event::PeerUp(p) if p.id == bid));
    assert!(matches!(up, Some(Event::PeerUp(p)) if p.addr == b.addr()));
    a.stop();
    b.stop();
}

#[test]
fn peer_up_is_visible_in_the_snapshot_when_it_arrives() {
    let mut a = TestNode::start(options("order_a", vec![]));
    let b = TestNode::start(options("order_b", vec![a.contact()]));
    let bid = b.id.clone();
    assert!(a
        .wait_event(T, |e| matches!(e, Event::PeerUp(p) if p.id == bid))
        .is_some());
    // No waiting: events are only sent after the snapshot is republished.
    assert!(a.active_ids().contains(&bid));
    assert_eq!(a.snap().counters.message_in("join"), 1);
}

#[test]
fn leave_then_stop_still_delivers_disconnect() {
    let mut a = TestNode::start(options("lstop_a", vec![]));
    let mut b = TestNode::start(options("lstop_b", vec![a.contact()]));
    let bid = b.id.clone();
    assert!(a
        .wait_event(T, |e| matches!(e, Event::PeerUp(p) if p.id == bid))
        .is_some());
    let aid = a.id.clone();
    assert!(b
        .wait_event(T, |e| matches!(e, Event::PeerUp(p) if p.id == aid))
        .is_some());
    // Stop right behind the leave: the DISCONNECT must not be lost.
    b.server().leave();
    b.stop();
    assert!(
        wait_until(T, || a.snap().counters.message_in("disconnect") == 1),
        "{}",
        dump(&[&a, &b])
    );
    a.stop();
}
