//! Start/stop semantics: synchronous bind errors, freeing the port, shutdown
//! on handle drop or when the event receiver is gone, config validation.

mod common;

use common::*;
use hyparview_transport::{Event, ListenError, Server, StartError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn can_bind(addr: SocketAddr) -> bool {
    std::net::TcpListener::bind(addr).is_ok()
}

#[test]
fn bind_conflict_is_reported_synchronously() {
    let a = TestNode::start(options("bind_a", vec![]));
    let mut o = options("bind_b", vec![]);
    o.listen = a.addr();
    match Server::start(o, Arc::new(|_| true)) {
        Err(StartError::ListenFailed(ListenError::AddrInUse)) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("second bind on the same port succeeded"),
    }
}

#[test]
fn stop_frees_the_port_for_a_restart() {
    let mut a = TestNode::start(options("rebind_a", vec![]));
    let port = a.addr();
    // Traffic first, so sockets on that port go through a real close.
    let mut b = TestNode::start(options("rebind_b", vec![a.contact()]));
    let aid = a.id.clone();
    assert!(b
        .wait_event(T, |e| matches!(e, Event::PeerUp(p) if p.id == aid))
        .is_some());
    a.stop();
    assert!(!a.snap().running);
    assert_eq!(a.snap().counters.connections, 0);
    // Stopped means the port is free now, not eventually.
    let mut o = options("rebind_a", vec![]);
    o.listen = port;
    o.incarnation = 2;
    let mut a2 = TestNode::start(o);
    assert_eq!(a2.addr(), port);
    // Stop is idempotent: a second stop sends no second Stopped.
    a.server().stop();
    a2.stop();
    b.stop();
    assert!(a
        .wait_event(Duration::from_millis(300), |e| *e == Event::Stopped)
        .is_none());
}

#[test]
fn dropping_the_handle_shuts_down_without_stopped() {
    let mut a = TestNode::start(options("drop_a", vec![]));
    let addr = a.addr();
    a.server = None;
    assert!(wait_until(T, || can_bind(addr)));
    assert!(a
        .wait_event(Duration::from_millis(200), |e| *e == Event::Stopped)
        .is_none());
}

#[test]
fn sink_reporting_owner_gone_shuts_down() {
    let a = TestNode::start(options("owner_a", vec![]));
    // A sink that refuses the first event, like a NIF owner that died.
    let mut o = options("owner_b", vec![a.contact()]);
    o.listen = "127.0.0.1:0".parse().unwrap();
    let b = Server::start(o, Arc::new(|_| false)).unwrap();
    let addr = b.listen_addr();
    // PeerUp is refused, so b stops by itself while its handle is alive.
    assert!(wait_until(T, || !b.snapshot().running));
    assert!(can_bind(addr));
}

#[test]
fn invalid_options_name_the_key() {
    let check = |o: hyparview_transport::ServerOptions, key: &str| match Server::start(
        o,
        Arc::new(|_| true),
    ) {
        Err(StartError::InvalidConfig { key: k, .. }) => assert_eq!(k, key),
        Err(e) => panic!("expected invalid {key}, got {e}"),
        Ok(_) => panic!("expected invalid {key}, got a server"),
    };
    let mut o = options("cfg_a", vec![]);
    o.advertise_ip = "0.0.0.0".parse().unwrap();
    check(o, "advertise_ip");
    let mut o = options("cfg_a", vec![]);
    o.advertise_ip = "::".parse().unwrap();
    check(o, "advertise_ip");
    let mut o = options("cfg_a", vec![]);
    o.id = "nohost".into();
    check(o, "id");
    let mut o = options("cfg_a", vec![]);
    o.secret = vec![];
    check(o, "secret");
    let mut o = options("cfg_a", vec![]);
    o.protocol.active_view_size = 0;
    check(o, "active_view_size");
    let mut o = options("cfg_a", vec![]);
    o.transport.failure_timeout = o.transport.heartbeat_interval;
    check(o, "failure_timeout");
    let mut o = options("cfg_a", vec![]);
    o.transport.max_frame_size = 10;
    check(o, "max_frame_size");
}

#[test]
fn advertised_port_is_the_bound_one_unless_given() {
    let a = TestNode::start(options("adv_a", vec![]));
    assert_ne!(a.addr().port(), 0);
    assert_eq!(a.snap().local.addr.port(), a.snap().listen_port);
    let mut o = options("adv_b", vec![]);
    o.advertise_port = Some(4242);
    let b = TestNode::start(o);
    assert_eq!(b.snap().local.addr.port(), 4242);
    assert_ne!(b.snap().listen_port, 4242);
}
