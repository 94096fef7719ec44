//! Untrusted input: garbage, oversize frames, wrong secrets, bad handshakes,
//! slow or frozen peers and connection floods. The server must reject them,
//! count them, report each remote IP once per `log_interval`, and keep working.

mod common;

use common::*;
use hyparview::Message;
use hyparview_transport::channel::{self, Sealer};
use hyparview_transport::handshake::{self, HandshakeError, Identity, Session};
use hyparview_transport::wire::Frame;
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
    identity_at(id, 1, secret)
}

fn identity_at(id: &str, incarnation: u64, secret: &[u8]) -> Identity {
    Identity::new(id, "127.0.0.1:9".parse().unwrap(), incarnation, secret)
}

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + T
}

/// A raw authenticated client connection.
async fn authed(src: &str, to: SocketAddr, me: &Identity) -> (TcpStream, Session) {
    let mut s = client(src, to).await;
    let session = handshake::dial(&mut s, me, None, 65536, deadline())
        .await
        .unwrap_or_else(|e| panic!("handshake failed: {e:?}"));
    (s, session)
}

/// Seals raw plaintext (not necessarily a valid frame) as records.
async fn send_plain(s: &mut TcpStream, sealer: &mut Sealer, plain: &[u8]) {
    let mut out = Vec::new();
    sealer.seal(plain, &mut out).unwrap();
    s.write_all(&out).await.unwrap();
}

const PREAMBLE: &[u8] = b"HYPV\x00\x02";

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
    // Not our protocol at all.
    let mut s = std_client("127.0.0.1", a.addr());
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed_within(&mut s, T));
    let ev = a.wait_event(T, rejected(RejectReason::BadMagic));
    assert!(
        matches!(ev, Some(Event::HandshakeRejected { addr, .. }) if addr.ip().to_string() == "127.0.0.1")
    );

    // Our preamble, then a first message far above the handshake cap:
    // rejected without reading it.
    let mut s = std_client("127.0.0.2", a.addr());
    s.write_all(&[PREAMBLE, &[0xff, 0xff]].concat()).unwrap();
    assert!(closed_within(&mut s, T));
    assert!(a
        .wait_event(T, rejected(RejectReason::OversizeFrame))
        .is_some());

    // Same address again: counted, not reported again.
    let mut s = std_client("127.0.0.2", a.addr());
    s.write_all(&[PREAMBLE, &[0xff, 0xfe]].concat()).unwrap();
    assert!(closed_within(&mut s, T));
    assert!(wait_until(T, || a.snap().counters.handshake_rejections == 3));
    let reports = a
        .events()
        .iter()
        .filter(|e| matches!(e, Event::HandshakeRejected { .. }))
        .count();
    assert_eq!(
        reports, 0,
        "already-consumed reports aside, no new report for 127.0.0.2 and the same reason"
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
    // The listener refuses before sending a byte; the dialer only sees a close.
    assert!(a.wait_event(T, rejected(RejectReason::BadAuth)).is_some());
    assert!(wait_until(T, || b.snap().counters.dial_failures >= 1));
    assert!(b.snap().counters.handshakes_closed >= 1);
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
    let raw = [
        (
            "127.0.0.3",
            b"XXXX\x00\x02".to_vec(),
            RejectReason::BadMagic,
        ),
        (
            "127.0.0.4",
            b"HYPV\x03\xe7".to_vec(),
            RejectReason::BadVersion,
        ),
    ];
    for (src, bytes, reason) in raw {
        rt.block_on(async {
            let mut s = client(src, addr).await;
            s.write_all(&bytes).await.unwrap();
            // Nothing comes back before the close.
            let mut sink = Vec::new();
            let r = tokio::time::timeout(T, s.read_to_end(&mut sink)).await;
            assert!(r.is_ok(), "server kept a rejected connection open");
            assert!(sink.is_empty(), "server answered an unauthenticated peer");
        });
        assert!(a.wait_event(T, rejected(reason)).is_some(), "no {reason}");
    }
    // An authenticated dialer with an invalid id: the listener refuses it.
    rt.block_on(async {
        let mut s = client("127.0.0.5", addr).await;
        let me = identity("no-at-sign", SECRET);
        let _ = handshake::dial(&mut s, &me, None, 65536, deadline()).await;
        let mut sink = Vec::new();
        let r = tokio::time::timeout(T, s.read_to_end(&mut sink)).await;
        assert!(r.is_ok(), "server kept a rejected connection open");
    });
    assert!(a.wait_event(T, rejected(RejectReason::BadId)).is_some());
    // A dialer that reaches a node with its own id stops itself.
    rt.block_on(async {
        let mut s = client("127.0.0.6", addr).await;
        let me = identity(&a.id, SECRET);
        let r = handshake::dial(&mut s, &me, None, 65536, deadline()).await;
        assert!(matches!(
            r,
            Err(HandshakeError::Rejected(RejectReason::SelfConnection))
        ));
    });
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
fn unauthenticated_connection_flood_is_bounded_and_sheds_the_oldest() {
    let mut o = options("flood_a", vec![]);
    o.transport.max_unauthenticated = 4;
    o.transport.handshake_timeout = 5000;
    o.transport.preauth_timeout = 5000;
    let mut a = TestNode::start(o);
    let mut idle: Vec<StdStream> = (0..4).map(|_| std_client("127.0.0.8", a.addr())).collect();
    assert!(wait_until(T, || a.snap().counters.connections_accepted == 4));
    // Each further one takes the slot of the oldest, long before the 5 s
    // pre-auth deadline; the newest are kept.
    let mut newer: Vec<StdStream> = Vec::new();
    for (i, old) in idle.iter_mut().take(3).enumerate() {
        newer.push(std_client("127.0.0.8", a.addr()));
        assert!(wait_until(T, || a.snap().counters.connections_accepted == 5 + i as u64));
        let started = Instant::now();
        assert!(closed_within(old, Duration::from_secs(3)));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    assert_eq!(a.snap().counters.handshakes_evicted, 3);
    drop(idle);
    drop(newer);
    join_works(&mut a, "flood_b");
    a.stop();
}

#[test]
fn bad_frames_after_handshake_close_the_connection() {
    let a = TestNode::start(options("frame_a", vec![]));
    let rt = runtime(2).unwrap();
    let addr = a.addr();
    rt.block_on(async {
        let me = identity("framer@127.0.0.1", SECRET);
        // Oversize length header from an authenticated peer.
        let (mut s, mut session) = authed("127.0.0.9", addr, &me).await;
        send_plain(&mut s, &mut session.sealer, &(1u32 << 30).to_be_bytes()).await;
        let mut rest = Vec::new();
        assert!(tokio::time::timeout(T, s.read_to_end(&mut rest))
            .await
            .is_ok());

        // Undecodable payload.
        let (mut s, mut session) = authed("127.0.0.9", addr, &me).await;
        send_plain(&mut s, &mut session.sealer, &[0, 0, 0, 2, 0xfe, 0xfe]).await;
        let mut rest = Vec::new();
        assert!(tokio::time::timeout(T, s.read_to_end(&mut rest))
            .await
            .is_ok());

        // A record that was not sealed with the session keys.
        let (mut s, _session) = authed("127.0.0.9", addr, &me).await;
        let mut fake = vec![0, 20];
        fake.extend_from_slice(&[0x5a; 20]);
        s.write_all(&fake).await.unwrap();
        let mut rest = Vec::new();
        assert!(tokio::time::timeout(T, s.read_to_end(&mut rest))
            .await
            .is_ok());
    });
    assert!(wait_until(T, || a.snap().counters.frames_rejected == 3));
}

#[test]
fn frozen_active_peer_is_detected_by_heartbeats() {
    let mut a = TestNode::start(options("frozen_a", vec![]));
    let rt = runtime(2).unwrap();
    let addr = a.addr();
    // Authenticate, JOIN and confirm the link (a keepalive: peers ping only
    // their active peers), then never read or write again (like SIGSTOP:
    // the kernel keeps the connection open, no FIN arrives).
    let stream = rt.block_on(async {
        let me = identity("frozen@127.0.0.1", SECRET);
        let (mut s, mut session) = authed("127.0.0.10", addr, &me).await;
        let frames = [Frame::Msg(Message::Join), Frame::Ping];
        channel::write_frames(&mut s, &mut session.sealer, &frames)
            .await
            .unwrap();
        (s, session)
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
            let me = identity_at("restarted@127.0.0.1", incarnation, SECRET);
            let (mut s, mut session) = authed("127.0.0.11", addr, &me).await;
            // JOIN, and a keepalive that confirms the link (see above).
            let frames = [Frame::Msg(Message::Join), Frame::Ping];
            channel::write_frames(&mut s, &mut session.sealer, &frames)
                .await
                .unwrap();
            (s, session)
        })
    };
    let (mut old, _old_session) = join_as(1);
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
        let me = identity("visitor@127.0.0.1", SECRET);
        let (mut s, mut session) = authed("127.0.0.12", addr, &me).await;
        channel::write_frames(&mut s, &mut session.sealer, &[Frame::Ping])
            .await
            .unwrap();
        let mut buf = Vec::new();
        let reply = tokio::time::timeout(
            T,
            channel::read_frame(&mut s, &mut session.opener, &mut buf),
        )
        .await;
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
