//! The eager/lazy peer sets: one shared tree, plus trees of their own for
//! a bounded number of origins.
//!
//! Modification from paper: Plumtree keeps one pair of sets for every
//! origin. Measured in the crate's tests, one tree shared by all origins
//! is rooted nowhere in particular, so the last delivery hop from most
//! origins is far above the shortest paths (14 hops against an average
//! origin eccentricity of 6 on 1,000 nodes); and the tree optimisation
//! (§4.4), which would shorten it, makes swaps for one origin that
//! lengthen paths for the others and never settles when several origins
//! broadcast. Here the shared tree carries every origin's messages, and an
//! origin gets a tree of its own (a copy of the shared one) the first time
//! the optimisation moves a link for it (only origins sending at most 5 s
//! apart are optimised, see `Plumtree::optimizable`); from then on its messages follow,
//! and its optimisations change, only its own tree. The copy means an
//! origin's first optimisation floods nothing. Like Riak's and Partisan's
//! broadcast (sets per root, seeded from common ones); unlike them, the
//! number of origins with trees is capped (`max_trees`), the least
//! recently used going back to the shared tree.
//!
//! Every tree holds every neighbour, eager or lazy, so a neighbour going
//! up or down changes them all.

use crate::message::Scope;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

#[derive(Clone, Debug, Default)]
pub(crate) struct Tree<P> {
    pub eager: BTreeSet<P>,
    pub lazy: BTreeSet<P>,
}

impl<P: Clone + Ord> Tree<P> {
    fn make_eager(&mut self, peer: &P) {
        self.lazy.remove(peer);
        self.eager.insert(peer.clone());
    }

    fn make_lazy(&mut self, peer: &P) {
        if self.eager.remove(peer) {
            self.lazy.insert(peer.clone());
        }
    }
}

/// The change a PRUNE or GRAFT makes to a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    Eager,
    Lazy,
}

struct Own<P> {
    tree: Tree<P>,
    used: u64,
}

pub(crate) struct Trees<P> {
    shared: Tree<P>,
    own: HashMap<P, Own<P>>,
    /// `own` by last use, oldest first.
    by_use: BTreeMap<u64, P>,
    clock: u64,
    max: usize,
}

impl<P: Clone + Eq + Hash + Ord> Trees<P> {
    pub fn new(max: usize) -> Trees<P> {
        Trees {
            shared: Tree {
                eager: BTreeSet::new(),
                lazy: BTreeSet::new(),
            },
            own: HashMap::new(),
            by_use: BTreeMap::new(),
            clock: 0,
            max,
        }
    }

    pub fn shared(&self) -> &Tree<P> {
        &self.shared
    }

    pub fn neighbors(&self) -> usize {
        self.shared.eager.len() + self.shared.lazy.len()
    }

    pub fn is_neighbor(&self, peer: &P) -> bool {
        self.shared.eager.contains(peer) || self.shared.lazy.contains(peer)
    }

    /// Origins with a tree of their own.
    pub fn own_len(&self) -> usize {
        self.own.len()
    }

    /// The tree `origin`'s messages follow (counts as a use).
    pub fn route(&mut self, origin: &P) -> &Tree<P> {
        if self.own.contains_key(origin) {
            self.touch(origin);
            return &self.own[origin].tree;
        }
        &self.shared
    }

    /// The tree `origin`'s messages follow, without touching it.
    pub fn get(&self, origin: &P) -> &Tree<P> {
        self.own.get(origin).map_or(&self.shared, |o| &o.tree)
    }

    /// The scope a change for `origin` made here has at the other end.
    pub fn scope(&self, origin: &P) -> Scope {
        if self.own.contains_key(origin) {
            Scope::Origin
        } else {
            Scope::Shared
        }
    }

    /// Applies `link` to `peer` in `scope` for `origin`; also to the own
    /// trees of `others` (origins of the ids a repair GRAFT carries) where
    /// they exist. Both ends of a link apply the same change.
    pub fn change(&mut self, origin: &P, scope: Scope, peer: &P, link: Link, others: &[&P]) {
        if !self.is_neighbor(peer) {
            return;
        }
        let apply = |tree: &mut Tree<P>| match link {
            Link::Eager => tree.make_eager(peer),
            Link::Lazy => tree.make_lazy(peer),
        };
        match scope {
            Scope::Origin => apply(self.own_mut(origin)),
            Scope::Shared => {
                apply(&mut self.shared);
                for o in std::iter::once(origin).chain(others.iter().copied()) {
                    if let Some(own) = self.own.get_mut(o) {
                        apply(&mut own.tree);
                    }
                }
            }
        }
    }

    pub fn neighbor_up(&mut self, peer: &P) {
        self.shared.make_eager(peer);
        for own in self.own.values_mut() {
            own.tree.make_eager(peer);
        }
    }

    pub fn neighbor_down(&mut self, peer: &P) {
        for tree in
            std::iter::once(&mut self.shared).chain(self.own.values_mut().map(|o| &mut o.tree))
        {
            tree.eager.remove(peer);
            tree.lazy.remove(peer);
        }
    }

    /// `origin`'s own tree, copied from the shared one if it has none; the
    /// least recently used origin loses its tree beyond `max`.
    fn own_mut(&mut self, origin: &P) -> &mut Tree<P> {
        if self.own.contains_key(origin) {
            self.touch(origin);
        } else {
            while self.own.len() >= self.max {
                let Some((_, oldest)) = self.by_use.pop_first() else {
                    break;
                };
                self.own.remove(&oldest);
            }
            self.clock += 1;
            self.by_use.insert(self.clock, origin.clone());
            self.own.insert(
                origin.clone(),
                Own {
                    tree: self.shared.clone(),
                    used: self.clock,
                },
            );
        }
        &mut self.own.get_mut(origin).expect("inserted above").tree
    }

    fn touch(&mut self, origin: &P) {
        let Some(own) = self.own.get_mut(origin) else {
            return;
        };
        self.by_use.remove(&own.used);
        self.clock += 1;
        own.used = self.clock;
        self.by_use.insert(self.clock, origin.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trees(max: usize) -> Trees<u32> {
        let mut t = Trees::new(max);
        for p in [1, 2, 3] {
            t.neighbor_up(&p);
        }
        t
    }

    fn eager(t: &Tree<u32>) -> Vec<u32> {
        t.eager.iter().copied().collect()
    }

    #[test]
    fn an_origin_scoped_change_copies_the_shared_tree_and_leaves_it_alone() {
        let mut t = trees(4);
        t.change(&9, Scope::Shared, &3, Link::Lazy, &[]);
        t.change(&9, Scope::Origin, &1, Link::Lazy, &[]);
        assert_eq!(eager(t.shared()), vec![1, 2]);
        assert_eq!(eager(t.get(&9)), vec![2]);
        assert_eq!(
            eager(t.get(&8)),
            vec![1, 2],
            "others follow the shared tree"
        );
        // A shared change reaches the own tree too; a neighbour change all.
        t.change(&9, Scope::Shared, &2, Link::Lazy, &[]);
        assert!(eager(t.get(&9)).is_empty());
        t.neighbor_down(&2);
        t.neighbor_up(&4);
        assert_eq!(eager(t.get(&9)), vec![4]);
        assert_eq!(eager(t.shared()), vec![1, 4]);
        assert_eq!(
            t.get(&9).lazy.iter().copied().collect::<Vec<_>>(),
            vec![1, 3]
        );
    }

    #[test]
    fn the_least_recently_used_origin_goes_back_to_the_shared_tree() {
        let mut t = trees(2);
        for origin in [7, 8] {
            t.change(&origin, Scope::Origin, &1, Link::Lazy, &[]);
        }
        t.route(&7);
        t.change(&9, Scope::Origin, &1, Link::Lazy, &[]);
        assert_eq!(t.own_len(), 2);
        assert_eq!(t.scope(&7), Scope::Origin);
        assert_eq!(t.scope(&9), Scope::Origin);
        assert_eq!(t.scope(&8), Scope::Shared);
    }

    #[test]
    fn changes_for_strangers_are_ignored() {
        let mut t = trees(2);
        t.change(&9, Scope::Origin, &5, Link::Eager, &[]);
        assert_eq!(t.own_len(), 0);
        assert!(!t.is_neighbor(&5));
    }
}
