//! The tree optimisation, and PRUNE and GRAFT scopes: the shared tree
//! and origins' own trees.

use super::*;

#[test]
fn the_tree_optimisation_swaps_a_long_eager_link_for_a_short_lazy_one() {
    let config = Config {
        optimization_threshold: Some(3),
        ..Config::default()
    };
    // Origin 9's first message here moves nothing: an origin is optimised
    // once its messages come at most `BUSY_WITHIN` apart.
    let mut n = node_with(config.clone(), &[1, 2]);
    recv(&mut n, 0, 2, prune());
    let early = Message::IHave(vec![Announcement {
        id: id(9, 0),
        round: 1,
    }]);
    recv(&mut n, 0, 2, early);
    assert!(sends(&recv(&mut n, 1, 1, gossip(9, 0, 6))).is_empty());
    assert_eq!(n.memory().trees, 0);
    // Paper order: IHAVE (round 1 from lazy 2) before GOSSIP (round 6 from 1).
    let mut n = node_with(config.clone(), &[1, 2]);
    recv(&mut n, 0, 2, prune());
    recv(&mut n, 0, 1, gossip(9, 0, 6));
    recv(
        &mut n,
        0,
        2,
        Message::IHave(vec![Announcement {
            id: id(9, 1),
            round: 1,
        }]),
    );
    let outs = recv(&mut n, 1, 1, gossip(9, 1, 6));
    assert_eq!(sends(&outs), vec![(2, "graft"), (1, "prune")]);
    let scoped: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                message: Message::Graft { origin, scope, ids },
                ..
            } => Some((*origin, *scope, ids.len())),
            Output::Send {
                message: Message::Prune { origin, scope },
                ..
            } => Some((*origin, *scope, 0)),
            _ => None,
        })
        .collect();
    assert_eq!(scoped, vec![(9, Scope::Origin, 0), (9, Scope::Origin, 0)]);
    // Only origin 9's own tree moved; the shared tree (every other origin)
    // is left alone.
    assert_eq!(n.eager_peers_for(&9).cloned().collect::<Vec<_>>(), vec![2]);
    assert_eq!((eager(&n), lazy(&n)), (vec![1], vec![2]));
    assert_eq!(n.eager_peers_for(&8).cloned().collect::<Vec<_>>(), vec![1]);
    assert_eq!(n.memory().trees, 1);
    assert_eq!(n.stats().optimizations, 1);
    // Other order: the payload first, then the IHAVE.
    let mut n = node_with(config.clone(), &[1, 2]);
    recv(&mut n, 0, 2, prune());
    recv(&mut n, 0, 1, gossip(9, 0, 6));
    recv(&mut n, 0, 1, gossip(9, 1, 6));
    let outs = recv(
        &mut n,
        1,
        2,
        Message::IHave(vec![Announcement {
            id: id(9, 1),
            round: 1,
        }]),
    );
    assert_eq!(sends(&outs), vec![(2, "graft"), (1, "prune")]);
    // Not shorter by the threshold, or disabled: nothing moves.
    let mut n = node_with(config, &[1, 2]);
    recv(&mut n, 0, 2, prune());
    recv(&mut n, 0, 1, gossip(9, 0, 6));
    recv(&mut n, 0, 1, gossip(9, 1, 6));
    assert!(sends(&recv(
        &mut n,
        1,
        2,
        Message::IHave(vec![Announcement {
            id: id(9, 1),
            round: 4
        }])
    ))
    .is_empty());
    let mut n = node(&[1, 2]);
    recv(&mut n, 0, 2, prune());
    recv(&mut n, 0, 1, gossip(9, 0, 6));
    recv(&mut n, 0, 1, gossip(9, 1, 60));
    assert!(sends(&recv(
        &mut n,
        1,
        2,
        Message::IHave(vec![Announcement {
            id: id(9, 1),
            round: 0
        }])
    ))
    .is_empty());
}

fn scoped(outs: &[Output<u32>]) -> Vec<(u32, &'static str, u32, Scope)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                message: Message::Prune { origin, scope },
            } => Some((*to, "prune", *origin, *scope)),
            Output::Send {
                to,
                message: Message::Graft { origin, scope, .. },
            } => Some((*to, "graft", *origin, *scope)),
            _ => None,
        })
        .collect()
}

fn eager_for(n: &Node, origin: u32) -> Vec<u32> {
    n.eager_peers_for(&origin).cloned().collect()
}

#[test]
fn an_origin_scoped_prune_or_graft_changes_only_that_origins_tree() {
    let mut n = node(&[1, 2, 3]);
    let origin_scope = |origin| Message::Prune {
        origin,
        scope: Scope::Origin,
    };
    recv(&mut n, 0, 1, origin_scope(7));
    assert_eq!(eager_for(&n, 7), vec![2, 3]);
    assert_eq!(eager(&n), vec![1, 2, 3], "the shared tree is untouched");
    assert_eq!(n.memory().trees, 1);
    // Origin 7's messages follow its own tree, everyone else's the shared.
    let outs = recv(&mut n, 1, 3, gossip(7, 0, 0));
    assert_eq!(sends(&outs), vec![(2, "gossip")]);
    let outs = recv(&mut n, 1, 3, gossip(8, 0, 0));
    assert_eq!(sends(&outs), vec![(1, "gossip"), (2, "gossip")]);
    // The empty GRAFT of the optimisation moves the link back, for 7 only.
    let back = Message::Graft {
        origin: 7,
        scope: Scope::Origin,
        ids: vec![],
    };
    recv(&mut n, 2, 1, back);
    assert_eq!(eager_for(&n, 7), vec![1, 2, 3]);
    // A shared-scope PRUNE reaches the shared tree and 7's own tree.
    recv(
        &mut n,
        2,
        2,
        Message::Prune {
            origin: 7,
            scope: Scope::Shared,
        },
    );
    assert_eq!((eager(&n), eager_for(&n, 7)), (vec![1, 3], vec![1, 3]));
}

#[test]
fn a_duplicate_prune_names_the_tree_it_changed() {
    let mut n = node(&[1, 2, 3]);
    let own = Message::Prune {
        origin: 7,
        scope: Scope::Origin,
    };
    recv(&mut n, 0, 3, own);
    assert_eq!(eager_for(&n, 7), vec![1, 2]);
    // 8 has no tree of its own here: the prune is shared, 7's tree keeps 2.
    recv(&mut n, 0, 1, gossip(8, 0, 0));
    let outs = recv(&mut n, 0, 2, gossip(8, 0, 0));
    assert_eq!(scoped(&outs), vec![(2, "prune", 8, Scope::Shared)]);
    assert_eq!((eager(&n), eager_for(&n, 7)), (vec![1, 3], vec![1, 2]));
    // 7 has one: the prune stays in it.
    recv(&mut n, 1, 1, gossip(7, 0, 0));
    let outs = recv(&mut n, 1, 2, gossip(7, 0, 0));
    assert_eq!(scoped(&outs), vec![(2, "prune", 7, Scope::Origin)]);
    assert_eq!((eager(&n), eager_for(&n, 7)), (vec![1, 3], vec![1]));
}

#[test]
fn a_repair_graft_is_shared_and_reaches_the_trees_of_every_origin_it_asks_for() {
    let mut n = node(&[1, 2]);
    for p in [1, 2] {
        recv(&mut n, 0, p, prune());
        recv(
            &mut n,
            0,
            p,
            Message::Prune {
                origin: 7,
                scope: Scope::Origin,
            },
        );
    }
    let announce = Message::IHave(vec![
        Announcement {
            id: id(8, 0),
            round: 0,
        },
        Announcement {
            id: id(7, 0),
            round: 0,
        },
    ]);
    let outs = recv(&mut n, 0, 1, announce);
    let (after, timer) = timers(&outs)
        .into_iter()
        .find(|(_, t)| matches!(&t.0, TimerKind::Graft { id: i, .. } if *i == id(8, 0)))
        .unwrap();
    n.handle(after, Input::Timer(timer));
    let outs = drain(&mut n);
    assert_eq!(scoped(&outs), vec![(1, "graft", 8, Scope::Shared)]);
    assert_eq!((eager(&n), eager_for(&n, 7)), (vec![1], vec![1]));
}
