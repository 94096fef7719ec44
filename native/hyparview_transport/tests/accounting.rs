//! How handshake failures are counted and reported: a close is no
//! rejection, reports repeat once per `log_interval` with a count, an old
//! peer gets one clear line, and the per-IP limit sheds that IP's oldest.

mod common;

use common::*;
use hyparview_transport::{Event, LogLevel, RejectReason};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn client(src: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&format!("{src}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

/// Sends `bytes` and waits for the server to close.
fn probe(src: &str, to: SocketAddr, bytes: &[u8]) {
    let mut s = client(src, to);
    s.write_all(bytes).unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
}

fn rejections(n: &mut TestNode, reason: RejectReason) -> usize {
    n.events()
        .iter()
        .filter(|e| matches!(e, Event::HandshakeRejected { reason: r, .. } if *r == reason))
        .count()
}

#[test]
fn a_version_one_peer_gets_one_clear_line() {
    let mut a = TestNode::start(options("acct_v1", vec![]));
    // What a version-1 node sends first: u32 length, a postcard Hello
    // (variant 0, magic "HPV1", version 1, id, ...).
    let mut old = vec![0u8, 0, 0, 20, 0, b'H', b'P', b'V', b'1', 1, 7];
    old.extend_from_slice(b"old@127.0.0.1");
    for _ in 0..3 {
        probe("127.0.0.41", a.addr(), &old);
    }
    assert!(wait_until(T, || a.snap().counters.handshake_rejections == 3));
    let line = a.wait_event(T, |e| {
        matches!(e, Event::Log { level: LogLevel::Warning, message } if message.contains("protocol version"))
    });
    assert!(line.is_some(), "no log line names the version mismatch");
    assert_eq!(rejections(&mut a, RejectReason::BadVersion), 1);
    let lines = a
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Log { message, .. } if message.contains("protocol version")))
        .count();
    assert_eq!(lines, 0, "the version line was repeated");
    a.stop();
}

#[test]
fn rejections_are_reported_again_after_the_interval_with_a_count() {
    let mut o = options("acct_rate", vec![]);
    o.transport.log_interval = 400;
    let mut a = TestNode::start(o);
    for _ in 0..3 {
        probe("127.0.0.42", a.addr(), b"GET / HTTP/1.1\r\n\r\n");
    }
    assert!(wait_until(T, || a.snap().counters.handshake_rejections == 3));
    // The two left out are counted in one line when the interval is over.
    let count = a.wait_event(T, |e| {
        matches!(e, Event::Log { message, .. } if message.starts_with("2 more bad_magic from 127.0.0.42"))
    });
    assert!(count.is_some(), "no count of the suppressed rejections");
    assert_eq!(rejections(&mut a, RejectReason::BadMagic), 1);
    // A later rejection from the same address is reported again.
    probe("127.0.0.42", a.addr(), b"GET / HTTP/1.1\r\n\r\n");
    assert!(a
        .wait_event(T, |e| matches!(
            e,
            Event::HandshakeRejected {
                reason: RejectReason::BadMagic,
                ..
            }
        ))
        .is_some());
    a.stop();
}

#[test]
fn a_close_mid_handshake_is_counted_as_closed_not_rejected() {
    let mut a = TestNode::start(options("acct_closed", vec![]));
    // Preamble, then gone before the first message is complete.
    let mut s = client("127.0.0.43", a.addr());
    s.write_all(b"HYPV\x00\x02\x00\x30abc").unwrap();
    drop(s);
    assert!(wait_until(T, || a.snap().counters.handshakes_closed == 1));
    assert_eq!(a.snap().counters.handshake_rejections, 0);
    assert!(a
        .events()
        .iter()
        .all(|e| !matches!(e, Event::HandshakeRejected { .. })));
    a.stop();
}

#[test]
fn the_per_ip_limit_sheds_that_ips_oldest_only() {
    let mut o = options("acct_perip", vec![]);
    o.transport.max_unauthenticated_per_ip = 2;
    o.transport.handshake_timeout = 5000;
    o.transport.preauth_timeout = 5000;
    let mut a = TestNode::start(o);
    let mut other = client("127.0.0.45", a.addr());
    let mut first = client("127.0.0.44", a.addr());
    let _second = client("127.0.0.44", a.addr());
    assert!(wait_until(T, || a.snap().counters.connections_accepted == 3));
    let _third = client("127.0.0.44", a.addr());
    // The oldest of 127.0.0.44 is closed at once, long before 5 s.
    first
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 16];
    let r = first.read(&mut buf);
    assert!(
        matches!(&r, Ok(0))
            || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the oldest was kept: {r:?}"
    );
    assert!(wait_until(T, || a.snap().counters.handshakes_evicted == 1));
    // Another address keeps its slot.
    other
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let r = other.read(&mut buf);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "another address lost its slot: {r:?}"
    );
    a.stop();
}
