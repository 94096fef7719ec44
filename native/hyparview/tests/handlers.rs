//! One test (or more) per message handler, driving a single node by hand.
//! Over the ~600-line guideline: one file per handler family would scatter
//! the shared node builders; the tests are independent and short.
mod common;
use common::*;
use hyparview::{Config, Input, Message, Node, Output, Peer, Timer};

fn node(id: &str) -> Node {
    Node::new(peer(id), Config::default(), 7).unwrap()
}

/// Make `ids` active neighbors of `n` through accepted NEIGHBOR requests.
fn with_active(n: &mut Node, ids: &[&str]) {
    for (k, id) in ids.iter().enumerate() {
        n.handle(
            0,
            msg(
                &peer(id),
                Message::Neighbor {
                    high_priority: false,
                    epoch: 100 + k as u64,
                    merge: false,
                },
            ),
        );
    }
    drain(n);
    for id in ids {
        assert!(n.is_active(id));
    }
}

/// Put `ids` in the passive view through answered shuffles, one per
/// forwarder (a sender's unsolicited entries are budgeted).
fn with_passive(n: &mut Node, ids: &[&str]) {
    for (i, id) in ids.iter().enumerate() {
        n.handle(
            0,
            msg(
                &peer(&format!("fwd{i}")),
                Message::Shuffle {
                    origin: peer("origin"),
                    ttl: 1,
                    peers: vec![peer(id)],
                },
            ),
        );
        drain(n);
    }
    for id in ids {
        assert!(n.is_passive(id), "{id} passive");
    }
}

fn sent(outs: &[Output]) -> Vec<(String, Message)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { to, message } => Some((to.id.to_string(), message.clone())),
            _ => None,
        })
        .collect()
}

fn timers(outs: &[Output], kind: &str) -> Vec<(u64, Timer)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::SetTimer { after, timer } if format!("{timer:?}").contains(kind) => {
                Some((*after, timer.clone()))
            }
            _ => None,
        })
        .collect()
}

fn ups(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::PeerUp(p) => Some(p.id.to_string()),
            _ => None,
        })
        .collect()
}

fn downs(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::PeerDown(p) => Some(p.id.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn join_input_sends_join_and_starts_timers() {
    let mut n = node("a");
    n.handle(
        0,
        Input::Join {
            contacts: vec![peer("c"), peer("a")],
        },
    );
    let outs = drain(&mut n);
    assert_eq!(sent(&outs), vec![("c".to_string(), Message::Join)]);
    assert_eq!(timers(&outs, "Shuffle").len(), 1);
    assert_eq!(timers(&outs, "Merge").len(), 1);
    assert_eq!(timers(&outs, "JoinTimeout").len(), 1);
    assert!(
        n.active_view().is_empty(),
        "not up before the contact answers"
    );
    n.handle(
        1,
        msg(
            &peer("c"),
            Message::NeighborReply {
                accepted: true,
                epoch: 5,
            },
        ),
    );
    let outs = drain(&mut n);
    assert_eq!(ups(&outs), vec!["c"]);
    assert!(n.is_active("c"));
}

#[test]
fn join_is_accepted_and_forwarded() {
    let mut n = node("c");
    with_active(&mut n, &["x", "y"]);
    n.handle(0, msg(&peer("j"), Message::Join));
    let outs = drain(&mut n);
    assert_eq!(ups(&outs), vec!["j"]);
    let s = sent(&outs);
    assert!(s
        .iter()
        .any(|(to, m)| to == "j" && matches!(m, Message::NeighborReply { accepted: true, .. })));
    let fj: Vec<_> = s
        .iter()
        .filter(|(_, m)| matches!(m, Message::ForwardJoin { joiner, ttl: 6 } if joiner.id == "j"))
        .map(|(to, _)| to.clone())
        .collect();
    assert_eq!(fj, vec!["x", "y"]);
}

#[test]
fn join_into_full_view_evicts_one_peer_to_passive() {
    let mut n = node("c");
    with_active(&mut n, &["p1", "p2", "p3", "p4", "p5"]);
    n.handle(0, msg(&peer("j"), Message::Join));
    let outs = drain(&mut n);
    let d = downs(&outs);
    assert_eq!(d.len(), 1);
    assert!(n.is_passive(&d[0]));
    assert!(sent(&outs)
        .iter()
        .any(|(to, m)| *to == d[0] && matches!(m, Message::Disconnect { .. })));
    assert!(n.is_active("j"));
    assert_eq!(n.active_view().len(), 5);
}

#[test]
fn duplicate_join_confirms_without_new_walk() {
    let mut n = node("c");
    with_active(&mut n, &["x", "j"]);
    n.handle(0, msg(&peer("j"), Message::Join));
    let s = sent(&drain(&mut n));
    assert_eq!(s.len(), 1);
    assert!(matches!(
        s[0].1,
        Message::NeighborReply {
            accepted: true,
            epoch: 101
        }
    ));
}

#[test]
fn forward_join_ttl_zero_asks_joiner() {
    let mut n = node("n");
    with_active(&mut n, &["x", "y"]);
    n.handle(
        0,
        msg(
            &peer("x"),
            Message::ForwardJoin {
                joiner: peer("j"),
                ttl: 0,
            },
        ),
    );
    let outs = drain(&mut n);
    let s = sent(&outs);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, "j");
    assert!(matches!(
        s[0].1,
        Message::Neighbor {
            high_priority: false,
            merge: false,
            ..
        }
    ));
    assert!(!n.is_active("j"), "up only when the joiner accepts");
    let Message::Neighbor { epoch, .. } = s[0].1 else {
        unreachable!()
    };
    n.handle(
        1,
        msg(
            &peer("j"),
            Message::NeighborReply {
                accepted: true,
                epoch,
            },
        ),
    );
    assert_eq!(ups(&drain(&mut n)), vec!["j"]);
}

#[test]
fn forward_join_walks_and_lands_in_passive_at_prwl() {
    let mut n = node("n");
    with_active(&mut n, &["x", "y", "z", "v", "w"]);
    n.handle(
        0,
        msg(
            &peer("x"),
            Message::ForwardJoin {
                joiner: peer("j"),
                ttl: 3,
            },
        ),
    );
    let s = sent(&drain(&mut n));
    assert!(n.is_passive("j"), "ttl == PRWL adds to passive");
    assert_eq!(s.len(), 1);
    assert_ne!(s[0].0, "x", "not back to the sender");
    assert!(matches!(&s[0].1, Message::ForwardJoin { ttl: 2, .. }));
}

#[test]
fn forward_join_garbage_is_clamped_or_ignored() {
    let mut n = node("n");
    with_active(&mut n, &["x", "y", "z"]);
    n.handle(
        0,
        msg(
            &peer("x"),
            Message::ForwardJoin {
                joiner: peer("j"),
                ttl: u32::MAX,
            },
        ),
    );
    let s = sent(&drain(&mut n));
    assert!(
        matches!(&s[0].1, Message::ForwardJoin { ttl: 5, .. }),
        "clamped to ARWL-1"
    );
    n.handle(
        0,
        msg(
            &peer("x"),
            Message::ForwardJoin {
                joiner: peer("n"),
                ttl: 0,
            },
        ),
    );
    assert!(sent(&drain(&mut n)).is_empty(), "self as joiner ignored");
    n.handle(
        0,
        msg(
            &peer("x"),
            Message::ForwardJoin {
                joiner: peer("y"),
                ttl: 0,
            },
        ),
    );
    assert!(
        sent(&drain(&mut n)).is_empty(),
        "already active joiner ignored"
    );
}

#[test]
fn forward_join_with_single_neighbor_accepts() {
    let mut n = node("n");
    with_active(&mut n, &["x"]);
    n.handle(
        0,
        msg(
            &peer("x"),
            Message::ForwardJoin {
                joiner: peer("j"),
                ttl: 5,
            },
        ),
    );
    let s = sent(&drain(&mut n));
    assert_eq!(s[0].0, "j");
    assert!(matches!(s[0].1, Message::Neighbor { .. }));
}

#[test]
fn neighbor_low_priority_accepted_with_room_rejected_when_full() {
    let mut n = node("n");
    with_active(&mut n, &["p1", "p2", "p3", "p4"]);
    n.handle(
        0,
        msg(
            &peer("q"),
            Message::Neighbor {
                high_priority: false,
                epoch: 9,
                merge: false,
            },
        ),
    );
    let outs = drain(&mut n);
    assert_eq!(ups(&outs), vec!["q"]);
    assert!(sent(&outs).contains(&(
        "q".into(),
        Message::NeighborReply {
            accepted: true,
            epoch: 9
        }
    )));
    n.handle(
        0,
        msg(
            &peer("r"),
            Message::Neighbor {
                high_priority: false,
                epoch: 9,
                merge: false,
            },
        ),
    );
    let outs = drain(&mut n);
    assert!(ups(&outs).is_empty());
    assert!(sent(&outs).contains(&(
        "r".into(),
        Message::NeighborReply {
            accepted: false,
            epoch: 9
        }
    )));
    assert!(n.is_passive("r"));
    assert!(
        outs.contains(&Output::Disconnect { peer: peer("r") }),
        "one-off connection closed"
    );
}

#[test]
fn neighbor_high_priority_and_merge_accepted_when_full() {
    for (high, merge) in [(true, false), (false, true)] {
        let mut n = node("n");
        with_active(&mut n, &["p1", "p2", "p3", "p4", "p5"]);
        n.handle(
            0,
            msg(
                &peer("q"),
                Message::Neighbor {
                    high_priority: high,
                    epoch: 9,
                    merge,
                },
            ),
        );
        let outs = drain(&mut n);
        assert_eq!(ups(&outs), vec!["q"]);
        assert_eq!(downs(&outs).len(), 1);
        assert_eq!(n.active_view().len(), 5);
    }
}

#[test]
fn neighbor_reply_accept_reject_and_unsolicited() {
    let mut n = node("n");
    with_active(&mut n, &["p1", "p2", "p3", "p4", "p5"]);
    with_passive(&mut n, &["c1"]);
    // p4 fails: c1 (only passive candidate) is asked, low priority.
    n.handle(0, Input::ConnectionLost { peer: peer("p4") });
    let s = sent(&drain(&mut n));
    let Some((
        _,
        Message::Neighbor {
            high_priority: false,
            epoch,
            ..
        },
    )) = s.iter().find(|(to, _)| to == "c1").cloned()
    else {
        panic!("no promotion: {s:?}")
    };
    n.handle(
        1,
        msg(
            &peer("c1"),
            Message::NeighborReply {
                accepted: false,
                epoch,
            },
        ),
    );
    drain(&mut n);
    assert!(n.is_passive("c1"), "rejecting peer stays passive");
    assert_eq!(
        n.pending_requests(),
        0,
        "cooling down: not asked again at once"
    );
    // An accept for a request we no longer wait for is taken when there is room.
    n.handle(
        2,
        msg(
            &peer("c1"),
            Message::NeighborReply {
                accepted: true,
                epoch,
            },
        ),
    );
    assert_eq!(ups(&drain(&mut n)), vec!["c1"]);
    // ...and refused with DISCONNECT when full.
    n.handle(
        3,
        msg(
            &peer("z"),
            Message::NeighborReply {
                accepted: true,
                epoch: 77,
            },
        ),
    );
    let outs = drain(&mut n);
    assert!(ups(&outs).is_empty());
    assert!(sent(&outs).contains(&("z".into(), Message::Disconnect { epoch: 77 })));
}

#[test]
fn disconnect_moves_to_passive_and_stale_one_is_ignored() {
    let mut n = node("n");
    with_active(&mut n, &["p"]); // epoch 100
    n.handle(0, msg(&peer("p"), Message::Disconnect { epoch: 99 }));
    assert!(n.is_active("p"), "older epoch ignored");
    n.handle(0, msg(&peer("p"), Message::Disconnect { epoch: 100 }));
    let outs = drain(&mut n);
    assert_eq!(downs(&outs), vec!["p"]);
    assert!(n.is_passive("p"));
    // Disconnect from a peer we do not hold: nothing.
    n.handle(0, msg(&peer("q"), Message::Disconnect { epoch: 1 }));
    assert!(drain(&mut n)
        .iter()
        .all(|o| !matches!(o, Output::PeerDown(_))));
}

#[test]
fn shuffle_is_forwarded_then_answered_at_the_end_of_the_walk() {
    let mut n = node("n");
    with_active(&mut n, &["x", "y"]);
    let origin = peer("o");
    n.handle(
        0,
        msg(
            &peer("x"),
            Message::Shuffle {
                origin: origin.clone(),
                ttl: 3,
                peers: vec![peer("a")],
            },
        ),
    );
    let s = sent(&drain(&mut n));
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, "y");
    assert!(matches!(&s[0].1, Message::Shuffle { ttl: 2, .. }));
    assert!(!n.is_passive("a"), "forwarded, not integrated");

    with_passive(&mut n, &["b1", "b2"]);
    let list = vec![peer("a"), peer("n"), origin.clone()];
    n.handle(
        0,
        msg(
            &peer("x"),
            Message::Shuffle {
                origin: origin.clone(),
                ttl: 1,
                peers: list,
            },
        ),
    );
    let outs = drain(&mut n);
    let s = sent(&outs);
    let (to, Message::ShuffleReply { peers }) = &s[0] else {
        panic!("{s:?}")
    };
    assert_eq!(to, "o", "reply goes straight to the origin");
    assert!(peers.len() <= 3 && !peers.is_empty());
    assert!(n.is_passive("a") && n.is_passive("o"));
    assert!(!n.is_passive("n"), "self never integrated");
}

#[test]
fn shuffle_lists_are_truncated() {
    let mut n = node("n");
    with_active(&mut n, &["x"]);
    let peers: Vec<Peer> = (0..10_000).map(|i| peer(&format!("g{i}"))).collect();
    n.handle(
        0,
        msg(
            &peer("x"),
            Message::Shuffle {
                origin: peer("o"),
                ttl: 1,
                peers,
            },
        ),
    );
    drain(&mut n);
    assert!(n.passive_view().len() <= 30);
}

#[test]
fn shuffle_timer_starts_shuffle_and_reply_evicts_sent_entries_first() {
    let mut n = node("n");
    n.handle(0, Input::Join { contacts: vec![] });
    let (_, t) = timers(&drain(&mut n), "Shuffle").pop().unwrap();
    with_active(&mut n, &["x"]);
    let fill: Vec<String> = (0..30).map(|i| format!("f{i}")).collect();
    let fill_refs: Vec<&str> = fill.iter().map(|s| s.as_str()).collect();
    with_passive(&mut n, &fill_refs);
    n.handle(10_000, Input::Timer(t));
    let outs = drain(&mut n);
    let s = sent(&outs);
    let Some((to, Message::Shuffle { origin, ttl, peers })) = s
        .iter()
        .find(|(_, m)| matches!(m, Message::Shuffle { .. }))
        .cloned()
    else {
        panic!("no shuffle {s:?}")
    };
    assert_eq!(to, "x");
    assert_eq!(origin.id, "n");
    assert_eq!(ttl, 6);
    assert_eq!(peers.len(), 1 + 1 + 4, "self + min(ka, active) + kp");
    assert_eq!(timers(&outs, "Shuffle").len(), 1, "periodic");
    let sent_passive: Vec<String> = peers
        .iter()
        .filter(|p| p.id.starts_with('f'))
        .map(|p| p.id.to_string())
        .collect();
    let fresh: Vec<Peer> = (0..4).map(|i| peer(&format!("new{i}"))).collect();
    n.handle(
        10_001,
        msg(&peer("w"), Message::ShuffleReply { peers: fresh }),
    );
    drain(&mut n);
    for i in 0..4 {
        assert!(n.is_passive(&format!("new{i}")));
    }
    for id in sent_passive {
        assert!(
            !n.is_passive(&id),
            "{id} was sent and should be evicted first"
        );
    }
    // An unexpected reply is ignored.
    n.handle(
        10_002,
        msg(
            &peer("w"),
            Message::ShuffleReply {
                peers: vec![peer("junk")],
            },
        ),
    );
    assert!(!n.is_passive("junk"));
}

#[test]
fn connection_lost_promotes_from_passive_and_dial_failure_tries_next() {
    let mut n = node("n");
    with_active(&mut n, &["p1", "p2", "p3", "p4", "p5"]);
    with_passive(&mut n, &["c1", "c2"]);
    assert_eq!(n.pending_requests(), 0, "full: no promotion");
    n.handle(0, Input::ConnectionLost { peer: peer("p1") });
    let outs = drain(&mut n);
    assert_eq!(downs(&outs), vec!["p1"]);
    assert_eq!(n.stats().failures_detected, 1);
    assert!(n.suspected().iter().any(|s| s.id == "p1"));
    let reqs: Vec<_> = sent(&outs)
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::Neighbor { .. }))
        .collect();
    assert_eq!(reqs.len(), 1);
    assert!(matches!(
        reqs[0].1,
        Message::Neighbor {
            high_priority: false,
            merge: false,
            ..
        }
    ));
    let first = reqs[0].0.clone();
    n.handle(1, Input::DialFailed { peer: peer(&first) });
    let s = sent(&drain(&mut n));
    assert!(!n.is_passive(&first) && n.suspected().iter().any(|s| s.id == first));
    let next: Vec<_> = s
        .iter()
        .filter(|(_, m)| matches!(m, Message::Neighbor { .. }))
        .collect();
    assert_eq!(next.len(), 1, "the next passive candidate is tried");
    assert_ne!(next[0].0, first);
}

#[test]
fn empty_active_view_asks_one_candidate_with_high_priority() {
    let mut n = node("n");
    let peers: Vec<Peer> = ["c1", "c2", "c3"].iter().map(|i| peer(i)).collect();
    n.handle(
        0,
        msg(
            &peer("fwd"),
            Message::Shuffle {
                origin: peer("o"),
                ttl: 1,
                peers,
            },
        ),
    );
    let reqs: Vec<_> = sent(&drain(&mut n))
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::Neighbor { .. }))
        .collect();
    assert!(reqs.len() >= 2);
    let highs = reqs
        .iter()
        .filter(|(_, m)| {
            matches!(
                m,
                Message::Neighbor {
                    high_priority: true,
                    ..
                }
            )
        })
        .count();
    assert_eq!(highs, 1, "only one high-priority request at a time");
}

#[test]
fn neighbor_timeout_gives_up_on_the_candidate() {
    let mut n = node("n");
    with_active(&mut n, &["p1", "p2", "p3", "p4", "p5"]);
    with_passive(&mut n, &["c1"]);
    n.handle(0, Input::ConnectionLost { peer: peer("p4") });
    let outs = drain(&mut n);
    let (_, t) = timers(&outs, "NeighborTimeout").pop().unwrap();
    assert_eq!(n.pending_requests(), 1);
    n.handle(2_000, Input::Timer(t));
    drain(&mut n);
    assert_eq!(n.pending_requests(), 0);
    assert!(!n.is_passive("c1"));
}

#[test]
fn leave_disconnects_everyone_and_stops_timers() {
    let mut n = node("n");
    n.handle(0, Input::Join { contacts: vec![] });
    let (_, t) = timers(&drain(&mut n), "Shuffle").pop().unwrap();
    with_active(&mut n, &["x", "y"]);
    n.handle(1, Input::Leave);
    let outs = drain(&mut n);
    assert_eq!(downs(&outs).len(), 2);
    let d = sent(&outs)
        .iter()
        .filter(|(_, m)| matches!(m, Message::Disconnect { .. }))
        .count();
    assert_eq!(d, 2);
    assert!(n.active_view().is_empty());
    n.handle(10_000, Input::Timer(t));
    assert!(drain(&mut n).is_empty(), "stale timer ignored");
    n.handle(
        10_001,
        msg(
            &peer("z"),
            Message::Neighbor {
                high_priority: true,
                epoch: 1,
                merge: false,
            },
        ),
    );
    let s = sent(&drain(&mut n));
    assert!(matches!(
        s[0].1,
        Message::NeighborReply {
            accepted: false,
            ..
        }
    ));
    assert!(n.active_view().is_empty());
}

#[test]
fn messages_from_self_are_ignored() {
    let mut n = node("n");
    n.handle(0, msg(&peer("n"), Message::Join));
    n.handle(
        0,
        msg(
            &peer("n"),
            Message::Neighbor {
                high_priority: true,
                epoch: 1,
                merge: false,
            },
        ),
    );
    assert!(drain(&mut n).is_empty());
}

#[test]
fn config_is_validated() {
    let cfg = Config {
        active_view_size: 0,
        ..Config::default()
    };
    assert_eq!(
        Node::new(peer("a"), cfg, 1).err().unwrap().key,
        "active_view_size"
    );
}

#[test]
fn messages_round_trip_through_postcard() {
    let msgs = vec![
        Message::Join,
        Message::ForwardJoin {
            joiner: peer("j"),
            ttl: 3,
        },
        Message::Neighbor {
            high_priority: true,
            epoch: 5,
            merge: false,
        },
        Message::NeighborReply {
            accepted: true,
            epoch: 5,
        },
        Message::Disconnect { epoch: 5 },
        Message::Shuffle {
            origin: peer("o"),
            ttl: 2,
            peers: vec![peer("a")],
        },
        Message::ShuffleReply {
            peers: vec![peer("b")],
        },
    ];
    for m in msgs {
        let bytes = postcard::to_allocvec(&m).unwrap();
        let back: Message = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, m);
    }
}

#[test]
fn join_seeds_the_joiner_passive_view_once() {
    let mut c = node("c");
    with_active(&mut c, &["x"]);
    with_passive(&mut c, &["s1", "s2", "s3"]);
    c.handle(0, msg(&peer("j"), Message::Join));
    let s = sent(&drain(&mut c));
    let to_j: Vec<&Message> = s
        .iter()
        .filter(|(to, _)| to == "j")
        .map(|(_, m)| m)
        .collect();
    assert!(
        matches!(to_j[0], Message::NeighborReply { accepted: true, .. }),
        "accept first"
    );
    let Message::ShuffleReply { peers } = to_j[1].clone() else {
        panic!("{to_j:?}")
    };
    assert!(peers.iter().any(|p| p.id == "s1"));

    let mut j = node("j");
    j.handle(
        0,
        Input::Join {
            contacts: vec![peer("c")],
        },
    );
    drain(&mut j);
    assert!(!j.awaiting_reply("x"));
    assert!(j.awaiting_reply("c"), "transport must keep the connection");
    j.handle(1, msg(&peer("c"), to_j[0].clone()));
    j.handle(
        1,
        msg(
            &peer("c"),
            Message::ShuffleReply {
                peers: peers.clone(),
            },
        ),
    );
    drain(&mut j);
    assert!(!j.awaiting_reply("c"));
    assert!(j.is_passive("s1") || j.is_active("s1") || j.pending_requests() > 0);
    // A second unsolicited list is ignored.
    j.handle(
        2,
        msg(
            &peer("c"),
            Message::ShuffleReply {
                peers: vec![peer("junk")],
            },
        ),
    );
    assert!(!j.is_passive("junk"));
}

#[test]
fn evicted_passive_peers_are_tried_when_no_candidate_is_left() {
    let cfg = Config {
        passive_view_size: 4,
        shuffle_passive_count: 4,
        ..Config::default()
    };
    let mut n = Node::new(peer("n"), cfg, 3).unwrap();
    with_active(&mut n, &["p1", "p2", "p3", "p4", "p5"]);
    // 12 peers pass through a passive view of 4: 8 are evicted.
    for k in 0..3 {
        let peers: Vec<Peer> = (0..4).map(|i| peer(&format!("r{}", k * 4 + i))).collect();
        n.handle(
            0,
            msg(
                &peer(&format!("p{}", k + 1)),
                Message::Shuffle {
                    origin: peer("o"),
                    ttl: 1,
                    peers,
                },
            ),
        );
    }
    drain(&mut n);
    assert_eq!(n.passive_view().len(), 4);
    // Everything fails: the active peers, then every passive candidate.
    let mut asked = std::collections::BTreeSet::new();
    for p in ["p1", "p2", "p3", "p4", "p5"] {
        n.handle(1, Input::ConnectionLost { peer: peer(p) });
    }
    // Dials are budgeted: time passes (an unrelated input lets the node
    // act) until nothing is left to try.
    let (mut now, mut idle) = (2, 0);
    for _ in 0..100 {
        let outs = drain(&mut n);
        let reqs: Vec<String> = sent(&outs)
            .into_iter()
            .filter(|(_, m)| matches!(m, Message::Neighbor { .. }))
            .map(|(to, _)| to)
            .collect();
        if reqs.is_empty() {
            idle += 1;
            if idle > 2 {
                break;
            }
            now += 10_000;
            n.handle(
                now,
                Input::ConnectionLost {
                    peer: peer("nobody"),
                },
            );
            continue;
        }
        idle = 0;
        for r in reqs {
            asked.insert(r.clone());
            n.handle(now, Input::DialFailed { peer: peer(&r) });
        }
    }
    let from_reserve = asked.iter().filter(|id| id.starts_with('r')).count();
    assert!(
        from_reserve >= 10,
        "passive + evicted peers tried: {asked:?}"
    );
    assert!(n.active_view().is_empty() && n.passive_view().is_empty());
}

#[test]
fn forward_join_flood_keeps_requests_bounded() {
    let mut n = node("n");
    with_active(&mut n, &["x"]);
    for i in 0..1000 {
        let joiner = peer(&format!("j{i}"));
        n.handle(0, msg(&peer("x"), Message::ForwardJoin { joiner, ttl: 0 }));
    }
    drain(&mut n);
    assert!(n.pending_requests() <= 10);
    assert!(n.passive_view().len() <= 30);
}
