//! Keepalives and link confirmation, seen from a raw peer on the wire: an
//! active link is announced (`PeerUp`) only once the peer shows it holds
//! us, and an idle link between active peers carries one PING per
//! direction per interval and no PONGs.

mod common;

use common::*;
use hyparview::Message;
use hyparview_transport::channel;
use hyparview_transport::handshake::{self, Identity, Session};
use hyparview_transport::wire::Frame;
use hyparview_transport::{runtime, Event};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

const T: Duration = Duration::from_secs(10);

async fn authed(src: &str, to: SocketAddr, id: &str) -> (TcpStream, Session) {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{src}:0").parse().unwrap()).unwrap();
    let mut s = s.connect(to).await.unwrap();
    let me = Identity::new(id, "127.0.0.1:9".parse().unwrap(), 1, SECRET);
    let session = handshake::dial(&mut s, &me, None, 65536, Instant::now() + T)
        .await
        .unwrap_or_else(|e| panic!("handshake failed: {e:?}"));
    (s, session)
}

fn announced(id: &'static str) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::PeerUp(p) | Event::PeerDown(p) if p.id == id)
}

#[test]
fn an_active_peer_is_announced_once_it_confirms_the_link() {
    let mut a = TestNode::start(options("confirm_a", vec![]));
    let rt = runtime(2).unwrap();
    let addr = a.addr();
    let id = "joiner@127.0.0.1";
    let (mut s, mut session) = rt.block_on(async {
        let (mut s, mut session) = authed("127.0.0.20", addr, id).await;
        let join = [Frame::Msg(Message::Join)];
        channel::write_frames(&mut s, &mut session.sealer, &join)
            .await
            .unwrap();
        (s, session)
    });
    // The core holds it at once; the owner hears nothing yet, through
    // several heartbeat intervals (100 ms).
    assert!(wait_until(T, || a.active_ids().contains(id)));
    assert!(a
        .wait_event(Duration::from_millis(400), announced(id))
        .is_none());
    // A keepalive shows that it holds us: announced now.
    rt.block_on(async {
        channel::write_frames(&mut s, &mut session.sealer, &[Frame::Ping])
            .await
            .unwrap()
    });
    let up = a.wait_event(T, announced(id));
    assert!(
        matches!(&up, Some(Event::PeerUp(p)) if p.id == id),
        "{up:?}"
    );
    // Confirmed by a later message than the JOIN: `a` announced last, and
    // heard so right before the PeerUp.
    let events = a.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Connect(p) if *p == id)),
        "{events:?}"
    );
    drop(s);
    let down = a.wait_event(T, announced(id));
    assert!(
        matches!(&down, Some(Event::PeerDown(p)) if p.id == id),
        "{down:?}"
    );
    a.stop();
}

#[test]
fn a_link_lost_before_it_was_confirmed_is_never_announced() {
    let mut a = TestNode::start(options("unconfirmed_a", vec![]));
    let rt = runtime(2).unwrap();
    let addr = a.addr();
    let id = "fleeting@127.0.0.1";
    let s = rt.block_on(async {
        let (mut s, mut session) = authed("127.0.0.21", addr, id).await;
        let join = [Frame::Msg(Message::Join)];
        channel::write_frames(&mut s, &mut session.sealer, &join)
            .await
            .unwrap();
        s
    });
    assert!(wait_until(T, || a.active_ids().contains(id)));
    drop(s);
    assert!(wait_until(T, || !a.active_ids().contains(id)));
    assert!(a
        .wait_event(Duration::from_millis(300), announced(id))
        .is_none());
    a.stop();
}

#[test]
fn an_idle_active_link_carries_one_ping_per_interval_and_no_pongs() {
    let mut a = TestNode::start(options("keepalive_a", vec![]));
    let rt = runtime(2).unwrap();
    let addr = a.addr();
    let id = "pinger@127.0.0.1";
    let (pings, pongs, max_gap) = rt.block_on(async {
        let (mut s, mut session) = authed("127.0.0.22", addr, id).await;
        let join = [Frame::Msg(Message::Join), Frame::Ping];
        channel::write_frames(&mut s, &mut session.sealer, &join)
            .await
            .unwrap();
        // We ping every interval (100 ms), as an active peer does, and count
        // what comes back over 1.5 s.
        let (mut r, mut w) = s.into_split();
        let mut sealer = session.sealer;
        let writer = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if channel::write_frames(&mut w, &mut sealer, &[Frame::Ping])
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let end = Instant::now() + Duration::from_millis(1_500);
        let (mut pings, mut pongs) = (0, 0);
        let mut last = Instant::now();
        let mut max_gap = Duration::ZERO;
        let mut buf = Vec::new();
        while let Ok(frame) = tokio::time::timeout_at(
            end,
            channel::read_frame(&mut r, &mut session.opener, &mut buf),
        )
        .await
        {
            let now = Instant::now();
            max_gap = max_gap.max(now - last);
            last = now;
            match frame.expect("connection closed") {
                Frame::Ping => pings += 1,
                Frame::Pong => pongs += 1,
                _ => {}
            }
        }
        writer.abort();
        (pings, pongs, max_gap)
    });
    assert_eq!(pongs, 0, "an active peer's pings were answered");
    // One per interval (not more than one per half interval), and never
    // silent for longer than 1.5 intervals (plus scheduling slack).
    assert!((5..=30).contains(&pings), "{pings} pings in 1.5 s");
    assert!(
        max_gap <= Duration::from_millis(250),
        "silent for {max_gap:?}"
    );
    assert_eq!(a.snap().counters.heartbeat_timeouts, 0);
    assert!(a
        .events()
        .iter()
        .any(|e| matches!(e, Event::PeerUp(p) if p.id == id)));
    a.stop();
}

#[test]
fn of_the_two_ends_only_the_one_that_announces_last_is_told_to_connect() {
    let mut a = TestNode::start(options("last_a", vec![]));
    let mut b = TestNode::start(options("last_b", vec![a.contact()]));
    let (aid, bid) = (a.id.clone(), b.id.clone());
    // b joins through a: a takes the link first, b on a's answer (its
    // PeerUp comes at once), a on b's echo (announcing last).
    assert!(a
        .wait_event(T, |e| matches!(e, Event::PeerUp(p) if p.id == bid))
        .is_some());
    assert!(b
        .wait_event(T, |e| matches!(e, Event::PeerUp(p) if p.id == aid))
        .is_some());
    assert!(a
        .events()
        .iter()
        .any(|e| matches!(e, Event::Connect(p) if *p == bid)));
    assert!(!b
        .events()
        .iter()
        .any(|e| matches!(e, Event::Connect(p) if *p == aid)));
    b.stop();
    a.stop();
}

/// Nothing on the node is periodic: the keepalive and the failure check are
/// deadlines of the link itself. A raw active peer that goes silent hears a
/// PING after an interval and is failed once silent for `failure_timeout`:
/// never sooner, and not up to an interval later as a periodic check would
/// (the interval here is almost the timeout).
#[test]
fn a_silent_active_peer_is_failed_at_its_own_deadline() {
    let mut o = options("deadline_a", vec![]);
    o.transport.heartbeat_interval = 1_000;
    o.transport.failure_timeout = 1_200;
    // No shuffles: they would keep the link busy (and PINGs off it).
    o.protocol.shuffle_interval = 3_600_000;
    let mut a = TestNode::start(o);
    let rt = runtime(2).unwrap();
    let addr = a.addr();
    let id = "silent@127.0.0.1";
    let (last_sent, pings, closed) = rt.block_on(async {
        let (mut s, mut session) = authed("127.0.0.23", addr, id).await;
        let join = [Frame::Msg(Message::Join), Frame::Ping];
        channel::write_frames(&mut s, &mut session.sealer, &join)
            .await
            .unwrap();
        let last_sent = Instant::now();
        // From now on we only read, until the node gives up on us.
        let mut pings = 0;
        let mut buf = Vec::new();
        loop {
            let r = tokio::time::timeout(
                T,
                channel::read_frame(&mut s, &mut session.opener, &mut buf),
            )
            .await
            .expect("the node never closed the silent link");
            match r {
                Ok(Frame::Ping) => pings += 1,
                Ok(_) => {}
                Err(_) => break (last_sent, pings, Instant::now()),
            }
        }
    });
    let silent = closed - last_sent;
    assert!(
        silent >= Duration::from_millis(1_200),
        "failed after {silent:?} of silence (failure_timeout 1.2 s)"
    );
    assert!(
        silent <= Duration::from_millis(1_800),
        "failed only after {silent:?} of silence (failure_timeout 1.2 s)"
    );
    // The keepalive of the interval (1 s) went out before.
    assert_eq!(pings, 1, "{pings} pings in 1.2 s");
    assert!(wait_until(T, || a.snap().counters.heartbeat_timeouts == 1));
    a.stop();
}
