//! Gossip from a node that holds the secret but lies: incarnations in peer
//! lists, invalid ids, SHUFFLE floods and dial floods. Ids are node names
//! (`x@h`), as every node the runtime starts has.
mod common;
use common::*;
use hyparview::{Config, Input, Message, Node, Output, Peer};

fn node() -> Node {
    Node::new(peer("me@h"), Config::default(), 7).unwrap()
}

fn with_active(n: &mut Node, ids: &[&str]) {
    for (k, id) in ids.iter().enumerate() {
        let neighbor = Message::Neighbor {
            high_priority: false,
            epoch: 100 + k as u64,
            merge: false,
        };
        n.handle(0, msg(&peer(id), neighbor));
    }
    drain(n);
    assert!(ids.iter().all(|id| n.is_active(id)));
}

fn shuffle(peers: Vec<Peer>) -> Message {
    Message::Shuffle {
        origin: peer("origin@h"),
        ttl: 1,
        peers,
    }
}

fn fakes(tag: &str, k: usize) -> Vec<Peer> {
    (0..k).map(|i| peer(&format!("{tag}{i}@fake"))).collect()
}

fn fake_count(n: &Node) -> usize {
    n.passive_view()
        .iter()
        .filter(|p| p.id.ends_with("@fake"))
        .count()
}

fn neighbor_requests(outs: &[Output]) -> Vec<Peer> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                message: Message::Neighbor { .. },
            } => Some(to.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_gossiped_incarnation_never_drops_a_live_peer() {
    let mut n = node();
    with_active(&mut n, &["p1@h", "p2@h"]);
    let lie = peer_inc("p1@h", u64::MAX);
    n.handle(1, msg(&peer("p2@h"), shuffle(vec![lie.clone()])));
    let fj = Message::ForwardJoin {
        joiner: lie.clone(),
        ttl: 0,
    };
    n.handle(2, msg(&peer("p2@h"), fj));
    let outs = drain(&mut n);
    assert!(n.is_active("p1@h"), "live p1 dropped");
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::PeerDown(p) if p.id == "p1@h")));
    assert_eq!(
        n.active_view()
            .iter()
            .find(|p| p.id == "p1@h")
            .unwrap()
            .incarnation,
        1
    );
    // p1 is still heard.
    n.handle(
        3,
        msg(&peer("p1@h"), Message::Disconnect { epoch: u64::MAX }),
    );
    assert!(!n.is_active("p1@h") && n.is_passive("p1@h"));
    assert_eq!(n.stats().stale_ignored, 0);
}

#[test]
fn an_unknown_peer_gossiped_with_a_huge_incarnation_is_not_locked_out() {
    let mut n = node();
    with_active(&mut n, &["p2@h"]);
    n.handle(
        1,
        msg(&peer("p2@h"), shuffle(vec![peer_inc("p1@h", u64::MAX)])),
    );
    drain(&mut n);
    let stored = n
        .passive_view()
        .into_iter()
        .find(|p| p.id == "p1@h")
        .cloned();
    assert_eq!(
        stored.map(|p| p.incarnation),
        Some(Peer::UNKNOWN_INCARNATION),
        "stored, its incarnation not trusted"
    );
    // p1 itself (incarnation 5) asks for a link: accepted, not stale.
    let ask = Message::Neighbor {
        high_priority: false,
        epoch: 1,
        merge: false,
    };
    n.handle(2, msg(&peer_inc("p1@h", 5), ask));
    assert!(n.is_active("p1@h"));
    assert_eq!(n.stats().stale_ignored, 0);
}

#[test]
fn a_forward_join_to_a_gossiped_joiner_learns_its_incarnation_from_its_reply() {
    let mut n = node();
    with_active(&mut n, &["a@h"]);
    let fj = Message::ForwardJoin {
        joiner: peer_inc("j@h", 99),
        ttl: 0,
    };
    n.handle(1, msg(&peer("a@h"), fj));
    let outs = drain(&mut n);
    let epoch = outs
        .iter()
        .find_map(|o| match o {
            Output::Send {
                to,
                message: Message::Neighbor { epoch, .. },
            } if to.id == "j@h" => {
                assert_eq!(to.incarnation, Peer::UNKNOWN_INCARNATION);
                Some(*epoch)
            }
            _ => None,
        })
        .expect("asked the joiner");
    // The joiner (incarnation 5) accepts: the request learns 5 and the link
    // is taken, with j's own incarnation.
    let reply = Message::NeighborReply {
        accepted: true,
        epoch,
    };
    n.handle(2, msg(&peer_inc("j@h", 5), reply));
    let j = n.active_view().into_iter().find(|p| p.id == "j@h").cloned();
    assert_eq!(j.map(|p| p.incarnation), Some(5));
    assert_eq!(n.pending_requests(), 0);
}

#[test]
fn invalid_gossiped_ids_are_not_stored() {
    let mut n = node();
    with_active(&mut n, &["p2@h"]);
    let bad = [
        String::new(),
        "a\0b@h".to_string(),
        format!("x@{}", "h".repeat(5000)),
        "no-at-sign".to_string(),
        "two@at@signs".to_string(),
        "spa ce@h".to_string(),
    ];
    let peers: Vec<Peer> = bad.iter().map(|id| peer(id)).collect();
    n.handle(1, msg(&peer("p2@h"), shuffle(peers)));
    for (i, id) in bad.iter().enumerate() {
        let fj = Message::ForwardJoin {
            joiner: peer(id),
            ttl: 0,
        };
        n.handle(2 + i as u64, msg(&peer("p2@h"), fj));
    }
    let outs = drain(&mut n);
    assert!(n.passive_view().is_empty(), "{:?}", n.passive_view());
    assert!(neighbor_requests(&outs).is_empty(), "dialed an invalid id");
    assert_eq!(n.stats().gossip_ignored, 2 * bad.len() as u64);
    // An invalid SHUFFLE origin gets no reply.
    let m = Message::Shuffle {
        origin: peer("a\0@h"),
        ttl: 1,
        peers: vec![],
    };
    n.handle(10, msg(&peer("p2@h"), m));
    assert!(!drain(&mut n).iter().any(|o| matches!(
        o,
        Output::Send {
            message: Message::ShuffleReply { .. },
            ..
        }
    )));
}

#[test]
fn one_shuffle_replaces_at_most_a_shuffles_worth_of_passive_entries() {
    let mut n = node();
    let active: Vec<String> = (0..5).map(|i| format!("a{i}@h")).collect();
    with_active(
        &mut n,
        &active.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // 30 real entries, each from its own sender.
    for i in 0..30 {
        let real = vec![peer(&format!("r{i}@h"))];
        n.handle(1, msg(&peer(&format!("s{i}@h")), shuffle(real)));
    }
    drain(&mut n);
    assert_eq!(n.passive_view().len(), 30);
    n.handle(2, msg(&peer("a0@h"), shuffle(fakes("f", 64))));
    drain(&mut n);
    let c = Config::default();
    let k = c.shuffle_active_count + c.shuffle_passive_count + 1;
    assert!(fake_count(&n) <= k, "{} fakes", fake_count(&n));
    check_invariants(&n);
}

#[test]
fn a_shuffle_flood_from_one_sender_cannot_take_over_the_passive_view() {
    let mut n = node();
    with_active(&mut n, &["a0@h", "a1@h", "a2@h", "a3@h", "a4@h"]);
    for i in 0..30 {
        let real = vec![peer(&format!("r{i}@h"))];
        n.handle(1, msg(&peer(&format!("s{i}@h")), shuffle(real)));
    }
    drain(&mut n);
    // 1,000 SHUFFLEs a second for 10 s, each with 8 fresh fake peers.
    for t in 0..10_000u64 {
        let m = shuffle(fakes(&format!("t{t}x"), 8));
        n.handle(100 + t, msg(&peer("a0@h"), m));
        drain(&mut n);
    }
    let fakes = fake_count(&n);
    assert!(fakes <= 10, "{fakes} of 30 passive entries are fake");
    assert!(n.stats().gossip_ignored > 70_000);
}

#[test]
fn dials_to_gossiped_candidates_are_rate_limited() {
    let cfg = Config::default();
    let mut n = Node::new(peer("me@h"), cfg.clone(), 7).unwrap();
    n.handle(0, Input::Join { contacts: vec![] });
    drain(&mut n);
    with_active(&mut n, &["a@h"]);
    // Fake peers from many senders; every dial fails, then `a` goes away.
    for i in 0..30 {
        n.handle(
            1,
            msg(
                &peer(&format!("s{i}@h")),
                shuffle(fakes(&format!("g{i}x"), 1)),
            ),
        );
    }
    drain(&mut n);
    n.handle(2, Input::ConnectionLost { peer: peer("a@h") });
    let mut dials = 0;
    let mut now = 2;
    // 1 s of failing dials, each answered at once, with more fakes pushed
    // in from fresh senders all the while.
    for round in 0..1_000u64 {
        let asked = neighbor_requests(&drain(&mut n));
        dials += asked.len();
        for p in asked {
            n.handle(now, Input::DialFailed { peer: p });
        }
        now += 1;
        let m = shuffle(fakes(&format!("h{round}x"), 1));
        n.handle(now, msg(&peer(&format!("u{round}@h")), m));
    }
    let burst = cfg.passive_view_size.max(cfg.active_view_size);
    assert!(dials <= burst + 1, "{dials} dials in 1 s");
    assert!(dials >= 5, "still promotes: {dials}");
    assert!(n.stats().dials_deferred > 0);
}
