//! `Input::Contacts`: fresh contacts reach a running node without a restart.
//! Written against the input's contract only (the JOIN may go out at once or
//! after the first rejoin step), so it holds for any driver of the timers.
mod common;
use common::*;
use hyparview::{Config, Input, Message, Node, Output, Timer};

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
