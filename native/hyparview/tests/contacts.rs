//! `Input::Contacts`: the contact list replaced at run time (discovery).
mod common;
use common::*;
use hyparview::{Config, Input, Message, Node, Output, Timer};

fn node(id: &str) -> Node {
    Node::new(peer(id), Config::default(), 11).unwrap()
}

fn joins_sent(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                message: Message::Join,
            } => Some(to.id.to_string()),
            _ => None,
        })
        .collect()
}

fn rejoin_timers(outs: &[Output]) -> Vec<(u64, Timer)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::SetTimer { after, timer } if format!("{timer:?}").contains("Rejoin") => {
                Some((*after, timer.clone()))
            }
            _ => None,
        })
        .collect()
}

fn ids(n: &Node) -> Vec<String> {
    n.contacts().iter().map(|p| p.id.to_string()).collect()
}

#[test]
fn contacts_are_replaced_deduplicated_and_self_filtered_without_a_restart() {
    let mut n = short_node();
    assert!(n.is_active("c"));
    n.handle(
        2,
        Input::Contacts {
            contacts: vec![peer("d"), peer("a"), peer("d"), peer("e")],
        },
    );
    let outs = drain(&mut n);
    assert_eq!(ids(&n), ["d", "e"]);
    assert!(joins_sent(&outs).is_empty(), "no JOIN while connected");
    assert!(
        !outs.iter().any(|o| matches!(o, Output::SetTimer { .. })),
        "timers are not restarted: {outs:?}"
    );
    assert!(n.is_active("c"), "views untouched");
}

/// Join through `c` only, and let every JOIN fail until the rejoin backoff
/// exceeds `min_delay`. Returns the pending rejoin timer.
fn isolated_with_long_backoff(n: &mut Node, min_delay: u64) -> (u64, Timer) {
    n.handle(
        0,
        Input::Join {
            contacts: vec![peer("c")],
        },
    );
    let mut now = 0;
    let mut outs = drain(n);
    for _ in 0..20 {
        assert_eq!(joins_sent(&outs), ["c"]);
        n.handle(now, Input::DialFailed { peer: peer("c") });
        let timer = rejoin_timers(&drain(n))
            .pop()
            .expect("isolated: a rejoin is scheduled");
        if timer.0 > min_delay {
            return timer;
        }
        now += timer.0;
        n.handle(now, Input::Timer(timer.1));
        outs = drain(n);
    }
    panic!("backoff never grew past {min_delay} ms");
}

#[test]
fn fresh_contacts_cut_a_rejoin_backoff_short() {
    let cfg = Config::default();
    let mut n = node("a");
    let (_, old) = isolated_with_long_backoff(&mut n, 8 * cfg.rejoin_backoff_min);

    // Nothing new (a subset, self): the backoff stands.
    n.handle(
        100,
        Input::Contacts {
            contacts: vec![peer("c"), peer("a")],
        },
    );
    assert!(rejoin_timers(&drain(&mut n)).is_empty());

    n.handle(
        200,
        Input::Contacts {
            contacts: vec![peer("c"), peer("d")],
        },
    );
    let outs = drain(&mut n);
    let soon = rejoin_timers(&outs);
    assert_eq!(soon.len(), 1, "{outs:?}");
    assert!(
        soon[0].0 <= cfg.rejoin_backoff_min,
        "retry soon, not after the full backoff: {} ms",
        soon[0].0
    );
    assert!(
        joins_sent(&outs).is_empty(),
        "the retry waits for its timer"
    );

    // The superseded timer does nothing.
    n.handle(300, Input::Timer(old));
    assert!(joins_sent(&drain(&mut n)).is_empty());

    let rejoins = n.stats().rejoins;
    n.handle(400, Input::Timer(soon[0].1.clone()));
    assert_eq!(n.stats().rejoins, rejoins + 1);
    let mut tried = joins_sent(&drain(&mut n));
    assert_eq!(tried.len(), 1);
    n.handle(
        401,
        Input::DialFailed {
            peer: peer(&tried[0]),
        },
    );
    tried.extend(joins_sent(&drain(&mut n)));
    tried.sort();
    assert_eq!(tried, ["c", "d"], "the round uses the new list");
}

#[test]
fn a_connected_node_only_stores_fresh_contacts() {
    let mut n = short_node();
    n.handle(
        2,
        Input::Contacts {
            contacts: vec![peer("z")],
        },
    );
    let outs = drain(&mut n);
    assert!(rejoin_timers(&outs).is_empty() && joins_sent(&outs).is_empty());
    assert_eq!(ids(&n), ["z"]);
    // Losing the only neighbour: the next round goes to the new contact.
    n.handle(3, Input::ConnectionLost { peer: peer("c") });
    let outs = drain(&mut n);
    let (after, t) = rejoin_timers(&outs).pop().expect("isolated");
    n.handle(3 + after, Input::Timer(t));
    // The round: the new contact and the suspect `c`, in random order.
    let mut tried = joins_sent(&drain(&mut n));
    while let Some(last) = tried.last().cloned().filter(|_| tried.len() < 2) {
        n.handle(4 + after, Input::DialFailed { peer: peer(&last) });
        let next = joins_sent(&drain(&mut n));
        if next.is_empty() {
            break;
        }
        tried.extend(next);
    }
    tried.sort();
    assert_eq!(tried, ["c", "z"], "the round uses the new list");
}

// Written against the input's contract only (the JOIN may go out at once or
// after the first rejoin step), so the tests below hold for any driver of
// the timers.

/// Feeds back the timers in `outs` (and those they request) for at most
/// `horizon` ms of virtual time from `now`; returns every JOIN target seen,
/// those in `outs` included.
fn joins_within(n: &mut Node, mut outs: Vec<Output>, mut now: u64, horizon: u64) -> Vec<String> {
    let end = now + horizon;
    let mut joins = joins_sent(&outs);
    let mut timers: Vec<(u64, Timer)> = Vec::new();
    loop {
        for o in outs.drain(..) {
            if let Output::SetTimer { after, timer } = o {
                timers.push((now + after, timer));
            }
        }
        timers.sort_by_key(|t| t.0);
        if timers.is_empty() || timers[0].0 > end {
            return joins;
        }
        let (at, timer) = timers.remove(0);
        now = at;
        n.handle(now, Input::Timer(timer));
        outs = drain(n);
        joins.extend(joins_sent(&outs));
    }
}

fn config() -> Config {
    Config {
        rejoin_backoff_min: 500,
        rejoin_backoff_max: 30_000,
        ..Config::default()
    }
}

#[test]
fn isolated_node_joins_through_new_contacts() {
    let mut n = Node::new(peer("a"), config(), 7).unwrap();
    // A seed: nobody to join. Let its rejoin backoff grow to the maximum.
    n.handle(0, Input::Join { contacts: vec![] });
    let outs = drain(&mut n);
    assert!(joins_within(&mut n, outs, 0, 120_000).is_empty());

    n.handle(
        120_000,
        Input::Contacts {
            contacts: vec![peer("b"), peer("a"), peer("b")],
        },
    );
    let outs = drain(&mut n);
    // Self and duplicates are dropped; the new contact is tried within the
    // first rejoin step, not after the backoff the empty list earned.
    let joins = joins_within(&mut n, outs, 120_000, 2 * 500);
    assert!(joins.contains(&"b".to_string()), "no JOIN to b: {joins:?}");
    assert!(joins.iter().all(|j| j == "b"), "{joins:?}");
}

#[test]
fn join_replaces_contacts_given_before() {
    let mut n = Node::new(peer("a"), config(), 7).unwrap();
    n.handle(
        0,
        Input::Contacts {
            contacts: vec![peer("b")],
        },
    );
    n.handle(1, Input::Join { contacts: vec![] });
    let outs = drain(&mut n);
    assert!(joins_within(&mut n, outs, 1, 60_000).is_empty());
}

#[test]
fn rejoin_uses_the_replaced_contacts() {
    let mut n = Node::new(peer("a"), config(), 7).unwrap();
    n.handle(
        0,
        Input::Join {
            contacts: vec![peer("old")],
        },
    );
    assert_eq!(joins_sent(&drain(&mut n)), vec!["old".to_string()]);
    n.handle(
        1,
        Input::Contacts {
            contacts: vec![peer("new")],
        },
    );
    let mut outs = drain(&mut n);
    // "old" is dead: a later round goes to "new".
    n.handle(2, Input::DialFailed { peer: peer("old") });
    outs.extend(drain(&mut n));
    let joins = joins_within(&mut n, outs, 2, 60_000);
    assert!(
        joins.contains(&"new".to_string()),
        "no JOIN to new: {joins:?}"
    );
}

fn merges_sent(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                message: Message::Neighbor { merge: true, .. },
            } => Some(to.id.to_string()),
            _ => None,
        })
        .collect()
}

/// `a` joined through `c` and holds only `c`: short, not isolated.
fn short_node() -> Node {
    let mut n = node("a");
    n.handle(
        0,
        Input::Join {
            contacts: vec![peer("c")],
        },
    );
    n.handle(
        1,
        msg(
            &peer("c"),
            Message::NeighborReply {
                accepted: true,
                epoch: 3,
            },
        ),
    );
    drain(&mut n);
    n
}

/// Any input runs the node's upkeep: the same list again changes nothing else.
fn poke(n: &mut Node, now: u64) -> Vec<Output> {
    let contacts = n.contacts().to_vec();
    n.handle(now, Input::Contacts { contacts });
    drain(n)
}

#[test]
fn a_short_node_merges_with_each_fresh_contact_once_a_shuffle_interval_apart() {
    let i = Config::default().shuffle_interval;
    let mut n = short_node();
    n.handle(
        2,
        Input::Contacts {
            contacts: vec![peer("z")],
        },
    );
    assert!(
        merges_sent(&drain(&mut n)).is_empty(),
        "short only just now"
    );
    assert!(merges_sent(&poke(&mut n, i - 1)).is_empty());
    assert_eq!(
        merges_sent(&poke(&mut n, i)),
        ["z"],
        "short a whole interval"
    );
    n.handle(
        i + 1,
        msg(
            &peer("z"),
            Message::NeighborReply {
                accepted: true,
                epoch: 9,
            },
        ),
    );
    drain(&mut n);
    assert!(n.is_active("z"));
    // Used once; the next fresh one waits out the interval since the last.
    n.handle(
        i + 2,
        Input::Contacts {
            contacts: vec![peer("z"), peer("y")],
        },
    );
    assert!(merges_sent(&drain(&mut n)).is_empty());
    assert!(merges_sent(&poke(&mut n, 2 * i - 1)).is_empty());
    assert_eq!(merges_sent(&poke(&mut n, 2 * i)), ["y"]);
    assert!(
        merges_sent(&poke(&mut n, 10 * i)).is_empty(),
        "nothing fresh"
    );
}

#[test]
fn contacts_that_are_not_news_are_never_merged_with() {
    let i = Config::default().shuffle_interval;
    // The Join list, short for long: no contact merge.
    let mut n = short_node();
    assert!(merges_sent(&poke(&mut n, 10 * i)).is_empty());
    // A fresh contact that is already a neighbour is dropped.
    n.handle(
        10 * i + 1,
        Input::Contacts {
            contacts: vec![peer("c")],
        },
    );
    assert!(merges_sent(&poke(&mut n, 20 * i)).is_empty());
    // A new Join makes the list the starting point again.
    let mut n = short_node();
    n.handle(
        2,
        Input::Contacts {
            contacts: vec![peer("z")],
        },
    );
    n.handle(
        3,
        Input::Join {
            contacts: vec![peer("c"), peer("z")],
        },
    );
    let outs: Vec<Output> = drain(&mut n)
        .into_iter()
        .chain(poke(&mut n, 10 * i))
        .collect();
    assert!(merges_sent(&outs).is_empty(), "{outs:?}");
}

#[test]
fn an_isolated_node_joins_its_fresh_contact_instead() {
    let i = Config::default().shuffle_interval;
    let mut n = short_node();
    n.handle(2, Input::ConnectionLost { peer: peer("c") });
    n.handle(
        3,
        Input::Contacts {
            contacts: vec![peer("z")],
        },
    );
    let outs: Vec<Output> = drain(&mut n)
        .into_iter()
        .chain(poke(&mut n, 2 * i))
        .collect();
    assert!(merges_sent(&outs).is_empty(), "{outs:?}");
}

#[test]
fn an_isolated_node_still_promoting_merges_with_its_fresh_contact_at_high_priority() {
    let i = Config::default().shuffle_interval;
    let mut n = short_node();
    // Passive peers that will not answer (dead after a massive failure).
    n.handle(
        2,
        msg(
            &peer("c"),
            Message::Shuffle {
                origin: peer("x"),
                ttl: 0,
                peers: vec![peer("p1"), peer("p2"), peer("p3")],
            },
        ),
    );
    n.handle(3, Input::ConnectionLost { peer: peer("c") });
    n.handle(
        4,
        Input::Contacts {
            contacts: vec![peer("z")],
        },
    );
    let outs = drain(&mut n);
    assert!(n.active_view().is_empty());
    assert!(n.pending_requests() > 0, "promotions in flight: {outs:?}");
    assert!(
        joins_sent(&outs).is_empty(),
        "the rejoin waits on them: {outs:?}"
    );
    assert!(merges_sent(&poke(&mut n, i - 1)).is_empty());
    let outs = poke(&mut n, i + 1);
    let high: Vec<bool> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                message:
                    Message::Neighbor {
                        merge: true,
                        high_priority,
                        ..
                    },
            } if to.id == "z" => Some(*high_priority),
            _ => None,
        })
        .collect();
    assert_eq!(high, [true], "{outs:?}");
}
