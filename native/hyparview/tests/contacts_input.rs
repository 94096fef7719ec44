//! `Input::Contacts`: fresh contacts reach a running node without a restart.
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

#[test]
fn isolated_node_joins_through_new_contacts_at_once() {
    let mut n = Node::new(peer("a"), Config::default(), 7).unwrap();
    // A seed: nobody to join yet.
    n.handle(0, Input::Join { contacts: vec![] });
    assert!(joins_sent(&drain(&mut n)).is_empty());

    n.handle(
        10,
        Input::Contacts {
            contacts: vec![peer("b"), peer("a"), peer("b")],
        },
    );
    // Self and duplicates are dropped; the join does not wait for a rejoin timer.
    assert_eq!(joins_sent(&drain(&mut n)), vec!["b".to_string()]);
}

#[test]
fn contacts_before_join_only_replace_the_list() {
    let mut n = Node::new(peer("a"), Config::default(), 7).unwrap();
    n.handle(
        0,
        Input::Contacts {
            contacts: vec![peer("b")],
        },
    );
    assert!(joins_sent(&drain(&mut n)).is_empty(), "not joined yet");
    n.handle(1, Input::Join { contacts: vec![] });
    assert!(joins_sent(&drain(&mut n)).is_empty(), "Join replaced them");
}

#[test]
fn rejoin_uses_the_replaced_contacts() {
    let mut n = Node::new(peer("a"), Config::default(), 7).unwrap();
    n.handle(
        0,
        Input::Join {
            contacts: vec![peer("old")],
        },
    );
    assert_eq!(joins_sent(&drain(&mut n)), vec!["old".to_string()]);
    // While the join to "old" is outstanding no second round starts.
    n.handle(
        1,
        Input::Contacts {
            contacts: vec![peer("new")],
        },
    );
    assert!(joins_sent(&drain(&mut n)).is_empty());
    // "old" is dead: the rejoin that follows goes to "new".
    n.handle(2, Input::DialFailed { peer: peer("old") });
    let mut outs = drain(&mut n);
    let mut now = 2;
    for _ in 0..20 {
        if joins_sent(&outs).contains(&"new".to_string()) {
            return;
        }
        let due: Vec<(u64, Timer)> = outs
            .iter()
            .filter_map(|o| match o {
                Output::SetTimer { after, timer } => Some((*after, timer.clone())),
                _ => None,
            })
            .collect();
        outs.clear();
        for (after, timer) in due {
            now += after;
            n.handle(now, Input::Timer(timer));
            outs.extend(drain(&mut n));
        }
    }
    panic!("no JOIN to the new contact");
}
