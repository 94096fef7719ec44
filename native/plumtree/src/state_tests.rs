//! One test (or a few) per handler of [`crate::Plumtree`].

use crate::io::TimerKind;
use crate::{
    Announcement, BroadcastError, Config, DropReason, Event, Gossip, Input, Message, MessageId,
    Output, Plumtree, Scope, SkipReason, Timer,
};
use bytes::Bytes;

type Node = Plumtree<u32>;

fn node_with(config: Config, neighbors: &[u32]) -> Node {
    let mut n = Plumtree::new(0, 1, config, 42).unwrap();
    for &p in neighbors {
        n.handle(0, Input::NeighborUp(p));
    }
    drain(&mut n);
    n
}

fn node(neighbors: &[u32]) -> Node {
    node_with(Config::default(), neighbors)
}

fn drain(n: &mut Node) -> Vec<Output<u32>> {
    std::iter::from_fn(|| n.poll_output()).collect()
}

fn id(origin: u32, seq: u64) -> MessageId<u32> {
    MessageId {
        origin,
        incarnation: 5,
        seq,
    }
}

fn gossip(origin: u32, seq: u64, round: u32) -> Message<u32> {
    Message::Gossip(Gossip {
        id: id(origin, seq),
        round,
        payload: Bytes::from(format!("{origin}/{seq}")),
    })
}

/// A PRUNE for some other origin's duplicate: the link goes lazy in the
/// shared tree.
fn prune() -> Message<u32> {
    Message::Prune {
        origin: 9,
        scope: Scope::Shared,
    }
}

fn graft(ids: Vec<MessageId<u32>>) -> Message<u32> {
    Message::Graft {
        origin: 9,
        scope: Scope::Shared,
        ids,
    }
}

fn recv(n: &mut Node, now: u64, from: u32, message: Message<u32>) -> Vec<Output<u32>> {
    n.handle(now, Input::Message { from, message });
    drain(n)
}

fn sends(outs: &[Output<u32>]) -> Vec<(u32, &'static str)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { to, message } => Some((*to, message.kind())),
            _ => None,
        })
        .collect()
}

fn delivered(outs: &[Output<u32>]) -> Vec<(u32, u64)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Deliver { origin, seq, .. } => Some((*origin, *seq)),
            _ => None,
        })
        .collect()
}

fn timers(outs: &[Output<u32>]) -> Vec<(u64, Timer<u32>)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::SetTimer { after, timer } => Some((*after, timer.clone())),
            _ => None,
        })
        .collect()
}

fn graft_timer(outs: &[Output<u32>]) -> (u64, Timer<u32>) {
    timers(outs)
        .into_iter()
        .find(|(_, t)| matches!(t.0, TimerKind::Graft { .. }))
        .expect("graft timer")
}

fn eager(n: &Node) -> Vec<u32> {
    n.eager_peers().cloned().collect()
}

fn lazy(n: &Node) -> Vec<u32> {
    n.lazy_peers().cloned().collect()
}

#[test]
fn new_validates_the_config() {
    let bad = Config {
        gap_timeout: 0,
        ..Config::default()
    };
    assert_eq!(
        Plumtree::new(0u32, 1, bad, 1).err().unwrap().key,
        "gap_timeout"
    );
}

#[test]
fn neighbors_start_eager_and_leave_both_sets() {
    let mut n = node(&[1, 2, 0]);
    assert_eq!(eager(&n), vec![1, 2], "self is never a neighbour");
    n.handle(0, Input::NeighborDown(1));
    assert_eq!(eager(&n), vec![2]);
    recv(&mut n, 0, 2, prune());
    assert_eq!(lazy(&n), vec![2]);
    n.handle(0, Input::NeighborDown(2));
    assert!(eager(&n).is_empty() && lazy(&n).is_empty());
}

#[test]
fn broadcast_pushes_to_eager_peers_and_announces_to_lazy_ones_in_one_batch() {
    let mut n = node(&[1, 2, 3]);
    recv(&mut n, 0, 3, prune());
    let first = n.broadcast(10, Bytes::from_static(b"a")).unwrap();
    assert_eq!(
        first,
        MessageId {
            origin: 0,
            incarnation: 1,
            seq: 0
        }
    );
    let outs = drain(&mut n);
    assert_eq!(sends(&outs), vec![(1, "gossip"), (2, "gossip")]);
    assert!(
        delivered(&outs).is_empty(),
        "the origin does not deliver its own"
    );
    let dispatch: Vec<_> = timers(&outs)
        .into_iter()
        .filter(|(_, t)| t.0 == TimerKind::DispatchIHave)
        .collect();
    assert_eq!(dispatch.len(), 1);
    assert_eq!(dispatch[0].0, Config::default().ihave_interval);
    n.broadcast(20, Bytes::from_static(b"b")).unwrap();
    assert!(timers(&drain(&mut n))
        .iter()
        .all(|(_, t)| t.0 != TimerKind::DispatchIHave));
    n.handle(60, Input::Timer(dispatch[0].1.clone()));
    let outs = drain(&mut n);
    let Some(Output::Send {
        to: 3,
        message: Message::IHave(list),
    }) = outs.first()
    else {
        panic!("{outs:?}")
    };
    assert_eq!(
        list.iter().map(|a| (a.id.seq, a.round)).collect::<Vec<_>>(),
        vec![(0, 0), (1, 0)]
    );
    assert_eq!(n.stats().broadcasts, 2);
}

#[test]
fn a_full_ihave_batch_goes_out_at_once() {
    let config = Config {
        max_ihave_batch: 2,
        ..Config::default()
    };
    let mut n = node_with(config, &[1]);
    recv(&mut n, 0, 1, prune());
    n.broadcast(0, Bytes::new()).unwrap();
    assert!(sends(&drain(&mut n)).is_empty());
    n.broadcast(0, Bytes::new()).unwrap();
    assert_eq!(sends(&drain(&mut n)), vec![(1, "ihave")]);
}

#[test]
fn oversized_broadcasts_are_refused() {
    let config = Config {
        max_broadcast_size: 4,
        cache_max_bytes: 4,
        max_buffered_bytes: 4,
        ..Config::default()
    };
    let mut n = node_with(config, &[1]);
    let err = n.broadcast(0, Bytes::from_static(b"12345")).unwrap_err();
    assert_eq!(err, BroadcastError::TooLarge { size: 5, max: 4 });
    n.handle(
        0,
        Input::Broadcast {
            payload: Bytes::from_static(b"12345"),
        },
    );
    let outs = drain(&mut n);
    assert_eq!(
        outs,
        vec![Output::Event(Event::Dropped {
            from: None,
            reason: DropReason::TooLarge
        })]
    );
    n.handle(
        0,
        Input::Broadcast {
            payload: Bytes::from_static(b"1234"),
        },
    );
    assert_eq!(sends(&drain(&mut n)), vec![(1, "gossip")]);
}

#[test]
fn a_new_gossip_is_delivered_forwarded_one_round_further_and_cached() {
    let mut n = node(&[1, 2, 3]);
    recv(&mut n, 0, 3, prune());
    let outs = recv(&mut n, 5, 1, gossip(9, 0, 2));
    assert_eq!(delivered(&outs), vec![(9, 0)]);
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Deliver { hops: 3, .. })));
    let forwarded: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                message: Message::Gossip(g),
            } => Some((*to, g.round)),
            _ => None,
        })
        .collect();
    assert_eq!(forwarded, vec![(2, 3)], "not back to the sender, round + 1");
    assert_eq!(n.memory().cached_messages, 1);
    assert_eq!(n.memory().queued_announcements, 1, "announced to lazy 3");
}

#[test]
fn a_duplicate_prunes_its_sender() {
    let mut n = node(&[1, 2]);
    recv(&mut n, 0, 1, gossip(9, 0, 0));
    let outs = recv(&mut n, 1, 2, gossip(9, 0, 0));
    assert_eq!(sends(&outs), vec![(2, "prune")]);
    assert!(delivered(&outs).is_empty());
    assert_eq!((eager(&n), lazy(&n)), (vec![1], vec![2]));
    let s = n.stats();
    assert_eq!(
        (s.duplicates, s.prunes_sent, s.delivered, s.gossip_received),
        (1, 1, 1, 2)
    );
}

#[test]
fn invalid_gossip_is_dropped_with_a_reason() {
    let config = Config {
        max_broadcast_size: 8,
        cache_max_bytes: 8,
        max_buffered_bytes: 8,
        ..Config::default()
    };
    let mut n = node_with(config, &[1]);
    let big = Message::Gossip(Gossip {
        id: id(9, 0),
        round: 0,
        payload: Bytes::from(vec![0; 9]),
    });
    let max = Message::Gossip(Gossip {
        id: id(9, u64::MAX),
        round: 0,
        payload: Bytes::new(),
    });
    let forged = Message::Gossip(Gossip {
        id: MessageId {
            origin: 0,
            incarnation: 1,
            seq: 0,
        },
        round: 0,
        payload: Bytes::new(),
    });
    for (message, reason) in [
        (big, DropReason::TooLarge),
        (max, DropReason::InvalidSeq),
        (forged, DropReason::Forged),
    ] {
        let outs = recv(&mut n, 0, 1, message);
        assert_eq!(
            outs,
            vec![Output::Event(Event::Dropped {
                from: Some(1),
                reason
            })]
        );
    }
    assert_eq!(n.stats().dropped, 3);
    // An older incarnation than the one followed is stale.
    recv(&mut n, 0, 1, gossip(9, 0, 0));
    let old = Message::Gossip(Gossip {
        id: MessageId {
            origin: 9,
            incarnation: 4,
            seq: 7,
        },
        round: 0,
        payload: Bytes::new(),
    });
    let outs = recv(&mut n, 0, 1, old);
    assert_eq!(
        outs,
        vec![Output::Event(Event::Dropped {
            from: Some(1),
            reason: DropReason::StaleIncarnation
        })]
    );
}

#[test]
fn a_newer_incarnation_flushes_the_old_stream_and_starts_a_new_one() {
    let mut n = node(&[1]);
    recv(&mut n, 0, 1, gossip(9, 0, 0));
    recv(&mut n, 0, 1, gossip(9, 2, 0)); // waits behind seq 1
    let newer = Message::Gossip(Gossip {
        id: MessageId {
            origin: 9,
            incarnation: 6,
            seq: 0,
        },
        round: 0,
        payload: Bytes::new(),
    });
    let outs = recv(&mut n, 10, 1, newer);
    assert_eq!(delivered(&outs), vec![(9, 2), (9, 0)]);
    assert!(outs.contains(&Output::Event(Event::GapSkipped {
        origin: 9,
        incarnation: 5,
        first_seq: 1,
        count: 1,
        reason: SkipReason::NewIncarnation,
    })));
    // The old incarnation is stale from now on.
    let outs = recv(&mut n, 10, 1, gossip(9, 1, 0));
    assert!(matches!(
        outs[..],
        [Output::Event(Event::Dropped {
            reason: DropReason::StaleIncarnation,
            ..
        })]
    ));
}

#[test]
fn an_announced_message_that_does_not_come_is_grafted_from_each_announcer_in_turn() {
    let config = Config::default();
    let mut n = node(&[1, 2, 3]);
    for p in [1, 2] {
        recv(&mut n, 0, p, prune());
    }
    let announce = |r| {
        Message::IHave(vec![Announcement {
            id: id(9, 0),
            round: r,
        }])
    };
    let outs = recv(&mut n, 0, 1, announce(4));
    let (after, t1) = graft_timer(&outs);
    assert!(after >= config.graft_timeout_1 && after <= config.graft_timeout_1 * 3 / 2);
    assert!(
        timers(&recv(&mut n, 1, 2, announce(5))).is_empty(),
        "one timer per id"
    );
    n.handle(after, Input::Timer(t1.clone()));
    let outs = drain(&mut n);
    assert_eq!(sends(&outs), vec![(1, "graft")]);
    assert!(eager(&n).contains(&1), "a grafted link is eager");
    let (after2, t2) = graft_timer(&outs);
    assert_eq!(after2, config.graft_timeout_2);
    n.handle(after + 1, Input::Timer(t1));
    assert!(drain(&mut n).is_empty(), "a superseded timer is stale");
    n.handle(after + after2, Input::Timer(t2));
    let outs = drain(&mut n);
    assert_eq!(sends(&outs), vec![(2, "graft")]);
    let (_, t3) = graft_timer(&outs);
    // The payload arrives: the last timer finds nothing missing.
    recv(&mut n, 2000, 2, gossip(9, 0, 5));
    n.handle(3000, Input::Timer(t3));
    assert!(sends(&drain(&mut n)).is_empty());
    assert_eq!(n.memory().missing, 0);
    assert_eq!(n.stats().grafts_sent, 2);
}

#[test]
fn ihave_from_a_stranger_or_for_known_ids_starts_no_timer() {
    let mut n = node(&[1]);
    recv(&mut n, 0, 1, gossip(9, 0, 0));
    let known = Message::IHave(vec![Announcement {
        id: id(9, 0),
        round: 0,
    }]);
    assert!(timers(&recv(&mut n, 0, 1, known.clone())).is_empty());
    let new = Message::IHave(vec![Announcement {
        id: id(9, 1),
        round: 0,
    }]);
    assert!(
        timers(&recv(&mut n, 0, 7, new)).is_empty(),
        "7 is no neighbour"
    );
    assert_eq!(n.memory().missing, 0);
}

#[test]
fn graft_makes_the_link_eager_and_replies_with_cached_payloads() {
    let mut n = node(&[1, 2]);
    recv(&mut n, 0, 1, gossip(9, 0, 3));
    recv(&mut n, 0, 2, prune());
    let outs = recv(&mut n, 1, 2, graft(vec![id(9, 0), id(9, 1)]));
    let [Output::Send {
        to: 2,
        message: Message::Gossip(g),
    }] = &outs[..]
    else {
        panic!("{outs:?}")
    };
    assert_eq!((g.id.clone(), g.round), (id(9, 0), 4));
    assert_eq!(eager(&n), vec![1, 2]);
    assert_eq!(n.stats().graft_misses, 1);
}

#[test]
fn cached_payloads_expire_on_their_timer() {
    let mut n = node(&[1]);
    n.broadcast(0, Bytes::from_static(b"x")).unwrap();
    let outs = drain(&mut n);
    let (after, t) = timers(&outs)
        .into_iter()
        .find(|(_, t)| t.0 == TimerKind::EvictCache)
        .unwrap();
    assert_eq!(after, Config::default().cache_max_age);
    n.handle(after - 1, Input::Timer(t.clone()));
    assert_eq!(n.memory().cached_messages, 1);
    let outs = drain(&mut n);
    assert_eq!(timers(&outs).len(), 1, "rescheduled");
    n.handle(after, Input::Timer(t));
    assert_eq!(n.memory().cached_messages, 0);
}

#[test]
fn oversized_id_lists_are_cut_at_the_cap() {
    let mut n = node(&[1]);
    let many: Vec<_> = (0..crate::MAX_IDS_PER_MESSAGE as u64 + 10)
        .map(|s| id(9, s))
        .collect();
    recv(&mut n, 0, 1, graft(many.clone()));
    assert_eq!(n.stats().ids_ignored, 10);
    let ann = many
        .into_iter()
        .map(|id| Announcement { id, round: 0 })
        .collect();
    recv(&mut n, 0, 1, Message::IHave(ann));
    assert_eq!(n.stats().ids_ignored, 20);
    assert_eq!(n.memory().missing, crate::MAX_IDS_PER_MESSAGE);
}

#[test]
fn one_graft_asks_the_announcer_for_everything_it_announced_that_is_missing() {
    let mut n = node(&[1, 2]);
    for p in [1, 2] {
        recv(&mut n, 0, p, prune());
    }
    let (after, t0) = graft_timer(&recv(
        &mut n,
        0,
        1,
        Message::IHave(vec![Announcement {
            id: id(9, 0),
            round: 0,
        }]),
    ));
    let both = vec![
        Announcement {
            id: id(9, 1),
            round: 0,
        },
        Announcement {
            id: id(8, 0),
            round: 0,
        },
    ];
    let outs = recv(&mut n, 1, 1, Message::IHave(both));
    let t1 = timers(&outs)
        .into_iter()
        .map(|(_, t)| t)
        .find(|t| matches!(&t.0, TimerKind::Graft { id: i, .. } if *i == id(9, 1)))
        .unwrap();
    recv(
        &mut n,
        1,
        2,
        Message::IHave(vec![Announcement {
            id: id(9, 1),
            round: 0,
        }]),
    );
    n.handle(after, Input::Timer(t0));
    let outs = drain(&mut n);
    let grafts: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                message: Message::Graft { ids, .. },
            } => Some((*to, ids.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(grafts, vec![(1, vec![id(9, 0), id(8, 0), id(9, 1)])]);
    // 9/1 still missing when its own timer fires: 1 was asked, so 2 is next.
    n.handle(after + 600, Input::Timer(t1));
    assert_eq!(sends(&drain(&mut n)), vec![(2, "graft")]);
}

#[path = "state_tree_tests.rs"]
mod trees;

#[test]
fn a_new_neighbour_hears_of_the_messages_received_within_the_catch_up_window() {
    let mut n = node(&[1]);
    recv(&mut n, 0, 1, gossip(9, 0, 0));
    recv(&mut n, 2_000, 1, gossip(9, 1, 3));
    n.broadcast(2_500, Bytes::from_static(b"own")).unwrap();
    drain(&mut n);
    // At 6,000 the window (5 s) reaches back to 1,000: seq 0 is too old.
    n.handle(6_000, Input::NeighborUp(2));
    let outs = drain(&mut n);
    let [Output::Send {
        to: 2,
        message: Message::IHave(list),
    }] = outs.as_slice()
    else {
        panic!("{outs:?}")
    };
    let listed: Vec<_> = list.iter().map(|a| (a.id.clone(), a.round)).collect();
    let own = MessageId {
        origin: 0,
        incarnation: 1,
        seq: 0,
    };
    // Oldest first, each with the round this node sends it with.
    assert_eq!(listed, vec![(id(9, 1), 4), (own, 0)]);
    assert_eq!(eager(&n), vec![1, 2], "the new link starts eager");
    // A neighbour reported up again is not a new one.
    n.handle(6_100, Input::NeighborUp(2));
    assert!(sends(&drain(&mut n)).is_empty());
}

#[test]
fn catch_up_is_off_at_a_zero_window_and_split_at_the_batch_size() {
    let off = Config {
        catch_up_window: 0,
        ..Config::default()
    };
    let mut n = node_with(off, &[1]);
    recv(&mut n, 0, 1, gossip(9, 0, 0));
    n.handle(10, Input::NeighborUp(2));
    assert!(sends(&drain(&mut n)).is_empty());

    let small = Config {
        max_ihave_batch: 2,
        ..Config::default()
    };
    let mut n = node_with(small, &[1]);
    for seq in 0..5 {
        recv(&mut n, seq * 10, 1, gossip(9, seq, 0));
    }
    n.handle(100, Input::NeighborUp(2));
    let sizes: Vec<_> = drain(&mut n)
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                to: 2,
                message: Message::IHave(list),
            } => Some(list.iter().map(|a| a.id.seq).collect::<Vec<_>>()),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, vec![vec![0, 1], vec![2, 3], vec![4]]);
}
