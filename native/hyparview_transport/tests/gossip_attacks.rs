//! Gossip attacks from an insider (a node that holds the secret but lies),
//! on loopback, as issue 9 found them: a SHUFFLE entry with incarnation
//! `u64::MAX`, a SHUFFLE flood with fake peers, invalid ids in gossip. The
//! insider is simulated with the transport's own handshake and frames
//! (`insider` below, the only version-specific part); the victims are real
//! servers, observed through their public snapshot.

mod common;

use common::*;
use hyparview::{Message, Peer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const T: Duration = Duration::from_secs(10);

/// An authenticated connection that sends whatever frames it is told to
/// and reads (and discards) everything the victim sends.
mod insider {
    use super::*;
    use hyparview_transport::channel::{self, Sealer};
    use hyparview_transport::handshake::{self, Identity};
    use hyparview_transport::wire::Frame;
    use tokio::io::AsyncReadExt;
    use tokio::net::tcp::OwnedWriteHalf;
    use tokio::net::TcpStream;

    pub struct Insider {
        pub peer: Peer,
        write: OwnedWriteHalf,
        sealer: Sealer,
    }

    pub async fn connect(id: &str, to: SocketAddr) -> Insider {
        let me = Identity::new(id, "127.0.0.1:9".parse().unwrap(), 1, SECRET);
        let mut s = TcpStream::connect(to).await.unwrap();
        let deadline = tokio::time::Instant::now() + T;
        let session = handshake::dial(&mut s, &me, None, 1 << 20, deadline)
            .await
            .unwrap_or_else(|e| panic!("insider handshake: {e:?}"));
        let (mut read, write) = s.into_split();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        Insider {
            peer: Peer::new(id, "127.0.0.1:9".parse().unwrap(), 1),
            write,
            sealer: session.sealer,
        }
    }

    impl Insider {
        pub async fn send(&mut self, m: Message) -> bool {
            channel::write_frames(&mut self.write, &mut self.sealer, &[Frame::Msg(m)])
                .await
                .is_ok()
        }
    }
}

fn attacker_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A direct SHUFFLE (TTL 1, origin = sender): integrated by the receiver.
fn shuffle(origin: &Peer, peers: Vec<Peer>) -> Message {
    Message::Shuffle {
        origin: origin.clone(),
        ttl: 1,
        peers,
    }
}

#[test]
fn a_shuffle_entry_with_a_huge_incarnation_does_not_drop_a_live_peer() {
    let v = TestNode::start(options("inc_v", vec![]));
    let p1 = TestNode::start(options("inc_p1", vec![v.contact()]));
    let p1_id = p1.id.clone();
    assert!(wait_until(T, || v.active_ids().contains(&p1_id)
        && p1.active_ids().contains(&v.id)));
    let rt = attacker_runtime();
    let lie = Peer::new(p1.id.as_str(), p1.addr(), u64::MAX);
    rt.block_on(async {
        let mut e = insider::connect("inc_evil@127.0.0.1", v.addr()).await;
        let origin = e.peer.clone();
        assert!(e.send(shuffle(&origin, vec![lie])).await);
        // Keep the connection open while we watch.
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::mem::forget(e);
    });
    // The lie has been processed once the victim answered it.
    assert!(wait_until(T, || v
        .snap()
        .counters
        .message_out("shuffle_reply")
        >= 1));
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        let held = v
            .snap()
            .active_view
            .iter()
            .find(|p| p.id == p1_id.as_str())
            .cloned();
        assert_eq!(
            held.map(|p| p.incarnation),
            Some(p1.peer.incarnation),
            "live p1 dropped or replaced after {:?}",
            watch.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_shuffle_flood_with_fake_peers_takes_over_nothing_and_scans_nobody() {
    // The shipped shuffle interval: the budgets are per interval.
    let mut o = options("flood_v", vec![]);
    o.protocol.shuffle_interval = hyparview::Config::default().shuffle_interval;
    let v = TestNode::start(o);
    let reals: Vec<TestNode> = (0..2)
        .map(|i| TestNode::start(options(&format!("flood_r{i}"), vec![v.contact()])))
        .collect();
    assert!(wait_until(T, || v.active_ids().len() == 2));
    let rt = attacker_runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let dials_before = v.snap().counters.dials;
    let (addr, stop2, sent2) = (v.addr(), stop.clone(), sent.clone());
    rt.spawn(async move {
        let mut e = insider::connect("flood_evil@127.0.0.1", addr).await;
        let origin = e.peer.clone();
        // Become a neighbour, so the victim keeps the connection.
        e.send(Message::Join).await;
        let mut k = 0u32;
        while !stop2.load(Ordering::Relaxed) {
            // 8 fresh fake peers at closed loopback ports: every dial fails
            // at once.
            let fakes = (0..8)
                .map(|_| {
                    k += 1;
                    let addr = SocketAddr::from(([127, 0, 0, 1], 1 + (k % 1000) as u16));
                    Peer::new(format!("fake{k}@127.0.0.1").as_str(), addr, 1)
                })
                .collect();
            if !e.send(shuffle(&origin, fakes)).await {
                break;
            }
            sent2.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let attack = Instant::now();
    let mut most_fakes = 0;
    while attack.elapsed() < Duration::from_secs(3) {
        let s = v.snap();
        let fakes = s
            .passive_view
            .iter()
            .filter(|p| p.id.starts_with("fake"))
            .count();
        most_fakes = most_fakes.max(fakes);
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let dials = v.snap().counters.dials - dials_before;
    let shuffles = sent.load(Ordering::Relaxed);
    println!("{shuffles} shuffles in 3 s: at most {most_fakes} fakes in passive, {dials} dials");
    assert!(shuffles >= 500, "the flood ran: {shuffles}");
    let passive = common::protocol().passive_view_size;
    assert!(
        most_fakes <= passive / 2,
        "{most_fakes} of {passive} passive entries were fake"
    );
    assert!(dials <= 40, "{dials} dials in 3 s: the victim scans");
    drop(reals);
}

#[test]
fn oversized_empty_and_nul_ids_in_gossip_are_not_stored() {
    let v = TestNode::start(options("ids_v", vec![]));
    let rt = attacker_runtime();
    // The sentinel's address accepts and holds connections: a dial to it
    // hangs (until the handshake deadline) instead of removing it at once.
    let hold = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let hold_addr = hold.local_addr().unwrap();
    rt.spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hold.accept().await {
            held.push(s);
        }
    });
    let bad = [
        format!("x@{}", "h".repeat(5000)),
        String::new(),
        "nul\0@127.0.0.1".to_string(),
    ];
    let at = |id: &str| Peer::new(id, hold_addr, 1);
    let mut peers: Vec<Peer> = bad.iter().map(|id| at(id)).collect();
    peers.push(at("sentinel@127.0.0.1"));
    rt.block_on(async {
        let mut e = insider::connect("ids_evil@127.0.0.1", v.addr()).await;
        let origin = e.peer.clone();
        assert!(e.send(shuffle(&origin, peers)).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::mem::forget(e);
    });
    assert!(
        wait_until(T, || v
            .snap()
            .passive_view
            .iter()
            .any(|p| p.id == "sentinel@127.0.0.1")),
        "the valid entry of the same message was not stored"
    );
    let s = v.snap();
    for p in s.passive_view.iter().chain(&s.active_view) {
        assert!(
            hyparview_transport::valid_id(&p.id),
            "stored an invalid id of {} bytes: {:?}",
            p.id.len(),
            &p.id[..p.id.len().min(16)]
        );
    }
}
