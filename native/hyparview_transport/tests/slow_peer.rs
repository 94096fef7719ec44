//! A peer that stops reading: broadcast frames to it are dropped and
//! counted once its broadcast budget is used, its connection is not failed
//! by broadcast traffic, and the other peer gets (nearly) every broadcast,
//! each one it misses reported as skipped.

mod common;

use common::*;
use hyparview::Message;
use hyparview_transport::handshake::{self, Identity};
use hyparview_transport::wire::Frame;
use hyparview_transport::{channel, runtime, BroadcastError, Event};
use plumtree::Bytes;
use std::time::Duration;
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(20);

#[test]
fn a_peer_that_does_not_read_costs_dropped_frames_not_memory_or_its_link() {
    stalled_peer("slow", 16 * 1024, 600, 1_024);
}

/// Many small broadcasts: each dropped GOSSIP becomes an IHAVE, and those
/// must not fill the write queue that protocol frames (Shuffle, keepalives)
/// need, or the first protocol frame would fail the stalled link.
#[test]
fn announcements_of_dropped_broadcasts_leave_room_for_protocol_frames() {
    stalled_peer("small", 64, 40_000, 256);
}

fn stalled_peer(name: &str, size: usize, n: usize, write_queue: usize) {
    let mut o = options(&format!("{name}_a"), vec![]);
    o.transport.write_queue = write_queue;
    // Long enough that the write timeout does not fail the stalled link
    // during the test: what is checked is the broadcast budget.
    o.transport.failure_timeout = 60_000;
    o.transport.max_broadcast_size = 64 * 1024;
    o.transport.broadcast_queue_bytes = 64 * 1024;
    let mut a = TestNode::start(o);
    let mut b = TestNode::start(options(&format!("{name}_b"), vec![a.contact()]));
    let bid = b.id.clone();
    assert!(wait_until(T, || a.active_ids().contains(&bid)));

    // The stalled peer: joins, then only ever writes pings.
    let rt = runtime(2).unwrap();
    let addr = a.addr();
    let stalled = rt.block_on(async move {
        let me = Identity::new(
            &format!("{name}_f@127.0.0.1"),
            "127.0.0.1:9".parse().unwrap(),
            1,
            SECRET,
        );
        // A small receive buffer, so that the kernel holds little of what
        // the stalled peer never reads.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        let mut s: TcpStream = socket.connect(addr).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut session = handshake::dial(&mut s, &me, None, 65536, deadline)
            .await
            .unwrap();
        channel::write_frames(&mut s, &mut session.sealer, &[Frame::Msg(Message::Join)])
            .await
            .unwrap();
        (s, session)
    });
    assert!(wait_until(T, || a
        .active_ids()
        .contains(&format!("{name}_f@127.0.0.1"))));
    let (mut s, mut session) = stalled;
    let pinger = rt.spawn(async move {
        loop {
            if channel::write_frames(&mut s, &mut session.sealer, &[Frame::Ping])
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    // Beyond the socket buffers and the 64 KiB budget (9.6 MiB, or more
    // frames than the write queue holds).
    for i in 0..n {
        let mut payload = vec![0u8; size];
        payload[..4].copy_from_slice(&(i as u32).to_be_bytes());
        let payload = Bytes::from(payload);
        // The handle's own queue is bounded too: back off while it is full.
        let mut tries = 0;
        while let Err(e) = a.server().broadcast(payload.clone()) {
            assert_eq!(e, BroadcastError::Overloaded);
            tries += 1;
            assert!(tries < 2_000, "the actor never took the queued broadcasts");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // b shares a's (deliberately tiny) budget, so it too may lose copies
    // while the writer is behind; every broadcast is delivered to it or
    // reported skipped, nothing is held forever.
    let accounted = |b: &TestNode| {
        let c = b.snap().counters.clone();
        (c.broadcasts_delivered, c.broadcasts_gap_skipped)
    };
    assert!(
        wait_until(3 * T, || {
            let (d, g) = accounted(&b);
            d + g == n as u64
        }),
        "b: {:?}",
        accounted(&b)
    );
    assert!(
        accounted(&b).0 >= (n as u64) * 9 / 10,
        "b: {:?}",
        accounted(&b)
    );
    let counters = a.snap().counters.clone();
    assert!(counters.broadcast_frames_dropped > 0, "{counters:?}");
    // Dropped frames are reported for telemetry.
    assert!(a.events().iter().any(|e| matches!(
        e,
        Event::BroadcastDropped {
            reason: "queue_full",
            ..
        }
    )));
    // The stalled peer is still an active neighbour, also after a few
    // shuffle and keepalive intervals of protocol frames queued behind the
    // announcements.
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < until {
        assert!(
            a.active_ids().contains(&format!("{name}_f@127.0.0.1")),
            "{:?}",
            a.snap().counters
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    pinger.abort();
    a.stop();
    b.stop();
}
