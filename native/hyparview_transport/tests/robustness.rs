//! Untrusted input: garbage, oversize frames, wrong secrets, bad handshakes,
//! slow or frozen peers and connection floods. The server must reject them,
//! count them, report each remote IP once, and keep working.

mod common;

use common::*;
use hyparview::Message;
use hyparview_transport::wire::{self, Frame, Hello, Identity, Role};
use hyparview_transport::{runtime, Event, RejectReason};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const T: Duration = Duration::from_secs(10);

fn rejected(reason: RejectReason) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::HandshakeRejected { reason: r, .. } if *r == reason)
}

/// A blocking client socket from a chosen loopback source address, so each
/// test case shows up as a distinct remote IP.
fn std_client(src: &str, to: SocketAddr) -> StdStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&format!("{src}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.connect(&to.into()).unwrap();
    let s: StdStream = s.into();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

async fn client(src: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{src}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Reads until the server closes; true if it closed within `within`.
fn closed_within(s: &mut StdStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn identity(id: &str, secret: &[u8]) -> Identity {
    Identity {
        id: id.into(),
        addr: "127.0.0.1:9".parse().unwrap(),
        incarnation: 1,
        secret: secret.to_vec(),
    }
}

fn join_works(a: &mut TestNode, name: &str) {
    let mut b = TestNode::start(options(name, vec![a.contact()]));
    let bid = b.id.clone();
    assert!(
        a.wait_event(T, |e| matches!(e, Event::PeerUp(p) if p.id == bid))
            .is_some(),
        "server stopped accepting good peers"
    );
    b.stop();
}

#[test]
fn garbage_and_oversize_rejected_once_per_ip_and_server_keeps_working() {
    let mut a = TestNode::start(options("garbage_a", vec![]));
    // "GET " read as a length is ~1.2 GB: rejected without reading it.
    let mut s = std_client("127.0.0.1", a.addr());
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed_within(&mut s, T));
    let ev = a.wait_event(T, rejected(RejectReason::OversizeFrame));
    assert!(
        matches!(ev, Some(Event::HandshakeRejected { addr, .. }) if addr.ip().to_string() == "127.0.0.1")
    );

    // Well-sized but undecodable, from another address.
    let mut s = std_client("127.0.0.2", a.addr());
    s.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).unwrap();
    assert!(closed_within(&mut s, T));
    assert!(a.wait_event(T, rejected(RejectReason::BadFrame)).is_some());

    // Same address again: counted, not reported again.
    let mut s = std_client("127.0.0.2", a.addr());
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    assert!(closed_within(&mut s, T));
    assert!(wait_until(T, || a.snap().counters.handshake_rejections == 3));
    let reports = a
        .events()
        .iter()
        .filter(|e| matches!(e, Event::HandshakeRejected { .. }))
        .count();
    assert_eq!(
        reports, 0,
        "already-consumed reports aside, no new report for 127.0.0.2"
    );

    join_works(&mut a, "garbage_b");
    a.stop();
}

#[test]
fn wrong_secret_is_rejected_on_both_sides() {
    let mut a = TestNode::start(options("secret_a", vec![]));
    let mut o = options("secret_b", vec![a.contact()]);
    o.secret = b"another secret".to_vec();
    let mut b = TestNode::start(o);
    assert!(a.wait_event(T, rejected(RejectReason::BadAuth)).is_some());
    assert!(b.wait_event(T, rejected(RejectReason::BadAuth)).is_some());
    assert!(wait_until(T, || b.snap().counters.dial_failures >= 1));
    assert!(a.snap().active_view.is_empty());
    assert!(b.snap().active_view.is_empty());
    assert_eq!(a.snap().counters.message_in("join"), 0);
    b.stop();
    join_works(&mut a, "secret_c");
    a.stop();
}

#[test]
fn bad_magic_version_id_and_self_connection_are_rejected() {
    let mut a = TestNode::start(options("hello_a", vec![]));
    let rt = runtime(2).unwrap();
    let addr = a.addr();
    let a_id = a.id.clone();
    let hello = |magic: [u8; 4], version: u16, id: &str| {
        wire::encode(&Frame::Hello(Hello {
            magic,
            version,
            id: id.into(),
            addr: "127.0.0.1:9".parse().unwrap(),
            incarnation: 1,
            nonce: [7; 32],
        }))
    };
    let cases = [
        (
            "127.0.0.3",
            hello(*b"XXXX", wire::VERSION, "x@h"),
            RejectReason::BadMagic,
        ),
        (
            "127.0.0.4",
            hello(wire::MAGIC, 999, "x@h"),
            RejectReason::BadVersion,
        ),
        (
            "127.0.0.5",
            hello(wire::MAGIC, wire::VERSION, "no-at-sign"),
            RejectReason::BadId,
        ),
        (
            "127.0.0.6",
            hello(wire::MAGIC, wire::VERSION, &a_id),
            RejectReason::SelfConnection,
        ),
    ];
    for (src, bytes, reason) in cases {
        rt.block_on(async {
            let mut s = client(src, addr).await;
            s.write_all(&bytes).await.unwrap();
            // The server answers with its own Hello, then closes.
            let mut sink = Vec::new();
            let r = tokio::time::timeout(T, s.read_to_end(&mut sink)).await;
            assert!(r.is_ok(), "server kept a rejected connection open");
        });
        let ev = a.wait_event(T, rejected(reason));
        assert!(ev.is_some(), "no {reason} rejection");
    }
    join_works(&mut a, "hello_b");
    a.stop();
}

#[test]
fn dialing_an_unexpected_id_fails_the_dial() {
    let mut a = TestNode::start(options("unexp_a", vec![]));
    let wrong = hyparview::Peer::new("someone@127.0.0.1", a.addr(), 0);
    let mut b = TestNode::start(options("unexp_b", vec![wrong]));
    assert!(b
        .wait_event(T, rejected(RejectReason::UnexpectedId))
        .is_some());
    assert!(wait_until(T, || b.snap().counters.dial_failures >= 1));
    assert!(a.snap().active_view.is_empty());
    b.stop();
    a.stop();
}

#[test]
fn slow_handshake_times_out() {
    let mut a = TestNode::start(options("slow_a", vec![]));
    let mut s = std_client("127.0.0.7", a.addr());
    let started = Instant::now();
    // Send nothing: the server must give up after handshake_timeout (500 ms).
    assert!(closed_within(&mut s, T));
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(a.wait_event(T, rejected(RejectReason::Timeout)).is_some());
    a.stop();
}

#[test]
fn unauthenticated_connection_flood_is_bounded() {
    let mut o = options("flood_a", vec![]);
    o.transport.max_unauthenticated = 4;
    o.transport.handshake_timeout = 5000;
    let mut a = TestNode::start(o);
    let mut idle: Vec<StdStream> = (0..4).map(|_| std_client("127.0.0.8", a.addr())).collect();
    // The first four get the server's Hello (their handshake is running).
    for s in &mut idle {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
    }
    // Further ones are closed at once, long before the 5 s handshake timeout.
    for _ in 0..3 {
        let mut s = std_client("127.0.0.8", a.addr());
        let started = Instant::now();
        assert!(closed_within(&mut s, Duration::from_secs(3)));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    assert!(wait_until(T, || a.snap().counters.connections_accepted == 7));
    drop(idle);
    join_works(&mut a, "flood_b");
    a.stop();
}

#[test]
fn bad_frames_after_handshake_close_the_connection() {
    let a = TestNode::start(options("frame_a", vec![]));
    let rt = runtime(2).unwrap();
    let addr = a.addr();
    rt.block_on(async {
        // Oversize length header from an authenticated peer.
        let mut s = client("127.0.0.9", addr).await;
        let me = identity("framer@127.0.0.1", SECRET);
        wire::handshake(&mut s, &me, Role::Dialer, None)
            .await
            .unwrap();
        s.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
        let mut rest = Vec::new();
        assert!(tokio::time::timeout(T, s.read_to_end(&mut rest))
            .await
            .is_ok());

        // Undecodable payload.
        let mut s = client("127.0.0.9", addr).await;
        wire::handshake(&mut s, &me, Role::Dialer, None)
            .await
            .unwrap();
        s.write_all(&[0, 0, 0, 2, 0xfe, 0xfe]).await.unwrap();
        let mut rest = Vec::new();
        assert!(tokio::time::timeout(T, s.read_to_end(&mut rest))
            .await
            .is_ok());
    });
    assert!(wait_until(T, || a.snap().counters.frames_rejected == 2));
}

#[test]
fn frozen_active_peer_is_detected_by_heartbeats() {
    let mut a = TestNode::start(options("frozen_a", vec![]));
    let rt = runtime(2).unwrap();
    let addr = a.addr();
    // Authenticate and JOIN, then never read or write again (like SIGSTOP:
    // the kernel keeps the connection open, no FIN arrives).
    let stream = rt.block_on(async {
        let mut s = client("127.0.0.10", addr).await;
        let me = identity("frozen@127.0.0.1", SECRET);
        wire::handshake(&mut s, &me, Role::Dialer, None)
            .await
            .unwrap();
        s.write_all(&wire::encode(&Frame::Msg(Message::Join)))
            .await
            .unwrap();
        s
    });
    assert!(a
        .wait_event(
            T,
            |e| matches!(e, Event::PeerUp(p) if p.id == "frozen@127.0.0.1")
        )
        .is_some());
    let up = Instant::now();
    assert!(a
        .wait_event(
            T,
            |e| matches!(e, Event::PeerDown(p) if p.id == "frozen@127.0.0.1")
        )
        .is_some());
    // Not before failure_timeout (500 ms) has passed without a frame.
    assert!(up.elapsed() >= Duration::from_millis(400));
    // The snapshot is republished right after the event's input is processed.
    assert!(wait_until(T, || a.snap().counters.heartbeat_timeouts == 1));
    assert!(a.snap().counters.failures_detected >= 1);
    drop(stream);
    a.stop();
}

#[test]
fn newer_incarnation_replaces_the_old_connection() {
    let mut a = TestNode::start(options("incarn_a", vec![]));
    let rt = runtime(2).unwrap();
    let addr = a.addr();
    let join_as = |incarnation: u64| {
        rt.block_on(async {
            let mut s = client("127.0.0.11", addr).await;
            let mut me = identity("restarted@127.0.0.1", SECRET);
            me.incarnation = incarnation;
            wire::handshake(&mut s, &me, Role::Dialer, None)
                .await
                .unwrap();
            s.write_all(&wire::encode(&Frame::Msg(Message::Join)))
                .await
                .unwrap();
            s
        })
    };
    let mut old = join_as(1);
    assert!(a
        .wait_event(
            T,
            |e| matches!(e, Event::PeerUp(p) if p.id == "restarted@127.0.0.1")
        )
        .is_some());
    // The "restarted" process connects again; the old connection is dropped.
    let _new = join_as(2);
    rt.block_on(async {
        let mut buf = [0u8; 4096];
        let closed = tokio::time::timeout(T, async {
            loop {
                match old.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "old incarnation's connection was kept");
    });
    assert!(wait_until(T, || a
        .snap()
        .active_view
        .iter()
        .any(|p| p.id == "restarted@127.0.0.1" && p.incarnation == 2)));
    assert_eq!(a.snap().counters.connections, 1);
    a.stop();
}

#[test]
fn idle_connection_of_a_non_active_peer_is_retired_and_pings_are_answered() {
    let mut o = options("idle_a", vec![]);
    o.transport.idle_timeout = 300;
    let a = TestNode::start(o);
    let rt = runtime(2).unwrap();
    let addr = a.addr();
    rt.block_on(async {
        let mut s = client("127.0.0.12", addr).await;
        let me = identity("visitor@127.0.0.1", SECRET);
        wire::handshake(&mut s, &me, Role::Dialer, None)
            .await
            .unwrap();
        wire::write_frame(&mut s, &Frame::Ping).await.unwrap();
        let reply = tokio::time::timeout(T, wire::read_frame(&mut s, 1024)).await;
        assert!(matches!(reply, Ok(Ok(Frame::Pong))), "no Pong: {reply:?}");
        // Not in the active view and unused: closed after idle_timeout, not before.
        let since = Instant::now();
        let mut rest = Vec::new();
        assert!(tokio::time::timeout(T, s.read_to_end(&mut rest))
            .await
            .is_ok());
        assert!(since.elapsed() >= Duration::from_millis(250));
    });
    assert!(wait_until(T, || a.snap().counters.connections == 0));
    assert_eq!(a.snap().counters.failures_detected, 0);
}
