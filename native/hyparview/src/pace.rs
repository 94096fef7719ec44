//! The pace of the periodic work in a settled overlay: what a node whose
//! active view stopped changing still does, and how often.
//!
//! Modification from paper — *calm shuffle*: the paper shuffles every
//! period forever. A SHUFFLE is a walk of `shuffle_ttl` hops plus a reply
//! to the origin, which is usually not a neighbour, so the reply costs a
//! fresh connection and handshake: at 64 idle nodes that is most of the
//! overlay's idle work. The shuffle's job is to keep passive views fresh
//! and mixed; once the active view has stayed the same for a whole period
//! the passive view is full of peers that were alive a period ago, and
//! there is less to refresh. So each period that ends with the active view
//! as it began, with both views full, doubles the next one, up to
//! `1 << MAX_CALM` times
//! `shuffle_interval` (40 s by default), and any change of the active view
//! (a link gained, lost or swapped) brings the base period back at once:
//! the next shuffle is rescheduled within one base period. Passive views
//! keep mixing (every node still starts a walk at least every 4 periods and
//! takes part in everybody else's), failures are repaired from the passive
//! view as before, and after them the affected nodes shuffle at the base
//! rate. A node with a short active view (it needs fresh candidates) or a
//! passive view with room (a small or new overlay, where a newcomer is
//! known to few and only walks from the others spread it) stays at the
//! base rate, and so does every node during the crossing's dense phase,
//! whose proofs (`crossing.rs`) come from walks; their horizon follows the
//! period.
//!
//! Modification from paper — *refusal backoff*: the paper has a node short
//! of neighbours ask one passive peer after another until one accepts. In
//! a settled overlay nearly every passive peer is full and refuses a
//! low-priority request, and a node one link short (they exist: a merge or
//! an eviction leaves one) asked its whole passive view every period, each
//! request on a fresh connection. Here, after `REFUSALS_PER_ROUND`
//! low-priority refusals with no change of the active view, low-priority
//! promotion holds for `backoff(shuffle_interval, 8 shuffle_interval,
//! rounds)`: 5-10 s, then 10-20 s, ... up to 40-80 s by default. The
//! hold covers the candidates that refused or dropped us before (those
//! whose cooldown was ever set); a new one (gossip, a peer that asked us,
//! one evicted from our view) is still asked once, so the request rate of
//! a held node follows the turnover of its passive view, and a short peer
//! that shows up there (e.g. one that just lost a link to an eviction) is
//! found as before. Any change of the active view lifts the hold and
//! resets the rounds, so
//! repair after a failure starts at once; an empty active view asks with
//! high priority, which is never held; dial failures and timeouts (dead
//! candidates) are not refusals and do not count. The escalation to a
//! merge request (`repair.rs`) still counts every refusal and is unchanged.
//! The hold needs no timer of its own: the first input after it ends (a
//! SHUFFLE passing through, a merge tick) runs the promotion again.

use crate::repair::{backoff, jittered};
use crate::{Config, Millis};
use rand::rngs::SmallRng;

/// The shuffle period grows up to `1 << MAX_CALM` times `shuffle_interval`.
const MAX_CALM: u32 = 2;
/// Low-priority refusals that make a round of the refusal backoff.
const REFUSALS_PER_ROUND: u32 = 8;
/// The refusal backoff is capped at this many shuffle intervals.
const MAX_HOLD_INTERVALS: u64 = 8;

#[derive(Default)]
pub(crate) struct Pace {
    /// Periods in a row that ended with the active view as it began.
    calm: u32,
    /// `seen` when the current period started.
    period_seen: u64,
    /// The active view's change count (`Views::changes`) last seen.
    seen: u64,
    /// Names the live shuffle timer.
    token: u64,
    /// When the live shuffle timer fires.
    due: Millis,
    /// Low-priority refusals in the current round.
    refusals: u32,
    /// Rounds of refusals since the active view last changed.
    rounds: u32,
    /// No low-priority promotion before this.
    hold_until: Millis,
}

impl Pace {
    /// The current shuffle period (before jitter).
    pub(crate) fn period(&self, config: &Config) -> Millis {
        config.shuffle_interval.saturating_mul(1 << self.calm)
    }

    /// Called after every input with the active view's change count.
    /// Returns true when the view changed while the next shuffle is further
    /// than a base period away: the caller reschedules it.
    pub(crate) fn observe(&mut self, now: Millis, changes: u64, config: &Config) -> bool {
        if changes == self.seen {
            return false;
        }
        self.seen = changes;
        self.calm = 0;
        self.refusals = 0;
        self.rounds = 0;
        self.hold_until = 0;
        let base = config.shuffle_interval;
        self.due > now.saturating_add(base.saturating_add(base / 4))
    }

    /// A shuffle period ended (its timer fired): calm when the active view
    /// did not change during it.
    pub(crate) fn period_ended(&mut self) {
        self.calm = if self.seen == self.period_seen {
            (self.calm + 1).min(MAX_CALM)
        } else {
            0
        };
    }

    /// A period ended that must not count as calm (a view not full, the
    /// crossing's dense phase).
    pub(crate) fn unsettled(&mut self) {
        self.calm = 0;
    }

    /// Starts the shuffle period: returns the delay and the timer's token.
    pub(crate) fn schedule(
        &mut self,
        now: Millis,
        config: &Config,
        rng: &mut SmallRng,
    ) -> (Millis, u64) {
        let after = jittered(self.period(config), rng);
        self.token = self.token.wrapping_add(1);
        self.due = now.saturating_add(after);
        self.period_seen = self.seen;
        (after, self.token)
    }

    /// Whether the shuffle timer `token` is the live one.
    pub(crate) fn is_live(&self, token: u64) -> bool {
        token == self.token
    }

    /// A low-priority promotion was refused by a live peer.
    pub(crate) fn refused(&mut self, now: Millis, config: &Config, rng: &mut SmallRng) {
        self.refusals = self.refusals.saturating_add(1);
        if self.refusals < REFUSALS_PER_ROUND {
            return;
        }
        let base = config.shuffle_interval;
        let max = base.saturating_mul(MAX_HOLD_INTERVALS);
        self.hold_until = now.saturating_add(backoff(base, max, self.rounds, rng));
        self.refusals = 0;
        self.rounds = self.rounds.saturating_add(1);
    }

    /// Whether low-priority promotion is on hold.
    pub(crate) fn holds(&self, now: Millis) -> bool {
        now < self.hold_until
    }

    #[cfg(test)]
    fn hold_until(&self) -> Millis {
        self.hold_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Input, Message, Node, Output, Peer};
    use rand::SeedableRng;
    use std::net::SocketAddr;

    fn peer(id: &str) -> Peer {
        Peer::new(id, SocketAddr::from(([127, 0, 0, 1], 1)), 1)
    }

    fn message(node: &mut Node, now: Millis, from: &str, message: Message) {
        let from = peer(from);
        node.handle(now, Input::Message { from, message });
    }

    /// The low-priority NEIGHBORs the node sent since the last call, with
    /// their epochs.
    fn asked(node: &mut Node) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        while let Some(o) = node.poll_output() {
            if let Output::Send {
                to,
                message:
                    Message::Neighbor {
                        high_priority: false,
                        epoch,
                        ..
                    },
            } = o
            {
                out.push((to.id.to_string(), epoch));
            }
        }
        out
    }

    /// Refuses every request the node sends at `now`; returns whom it asked.
    fn refuse_all(node: &mut Node, now: Millis) -> Vec<String> {
        let mut all = Vec::new();
        loop {
            let round = asked(node);
            if round.is_empty() {
                return all;
            }
            for (id, epoch) in &round {
                let reply = Message::NeighborReply {
                    accepted: false,
                    epoch: *epoch,
                };
                message(node, now, id, reply);
                all.push(id.clone());
            }
        }
    }

    #[test]
    fn a_short_node_stops_asking_refusing_peers_but_asks_new_ones() {
        let cfg = Config::default();
        let mut node = Node::new(peer("me"), cfg.clone(), 3).unwrap();
        node.handle(0, Input::Join { contacts: vec![] });
        let low = |epoch| Message::Neighbor {
            high_priority: false,
            epoch,
            merge: false,
        };
        // Five neighbours, then twelve peers that ask while we are full:
        // refused, they land in the passive view as fresh candidates.
        for i in 0..5 {
            message(&mut node, 1, &format!("a{i}"), low(10 + i));
        }
        for i in 0..12 {
            message(&mut node, 2, &format!("p{i}"), low(20 + i));
        }
        assert_eq!(node.passive_view().len(), 12);
        asked(&mut node);
        // One link lost: the node is short and asks one candidate at a time.
        message(&mut node, 1_000, "a0", Message::Disconnect { epoch: 10 });
        let first = refuse_all(&mut node, 1_000);
        // 8 refusals make a round; the hold still lets the 4 candidates
        // never asked through, once each, and then nobody.
        assert_eq!(first.len(), 12, "{first:?}");
        let mut unique = first.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 12, "each asked once: {first:?}");
        assert!(node.pace.holds(1_000));
        // Cooldowns over (one interval), the first hold (at most one
        // interval) too: the 4 refusals during the hold counted, so 4 more
        // end the round (without the backoff, all 13 would be asked).
        let t = 1_000 + cfg.shuffle_interval + 1;
        message(&mut node, t, "a1", low(30));
        let second = refuse_all(&mut node, t);
        assert_eq!(second.len(), 4, "{second:?}");
        // The second hold is longer (one to two intervals): with every
        // candidate asked before, nobody is asked during it.
        let t2 = t + cfg.shuffle_interval + 1;
        assert!(node.pace.holds(t2));
        message(&mut node, t2, "a1", low(31));
        assert_eq!(refuse_all(&mut node, t2), Vec::<String>::new());
        // A change of the active view lifts the hold at once.
        message(&mut node, t2, "a2", Message::Disconnect { epoch: 12 });
        assert!(!node.pace.holds(t2));
        assert!(refuse_all(&mut node, t2).len() >= 2);
    }

    #[test]
    fn calm_periods_double_up_to_the_cap_and_a_change_resets_them() {
        let cfg = Config::default();
        let base = cfg.shuffle_interval;
        let mut p = Pace::default();
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(p.period(&cfg), base);
        for want in [2, 4, 4] {
            p.period_ended();
            assert_eq!(p.period(&cfg), want * base);
        }
        let (after, t1) = p.schedule(0, &cfg, &mut rng);
        assert!(after >= 3 * base && after <= 5 * base, "{after}");
        assert!(p.is_live(t1));
        assert!(p.observe(1, 1, &cfg), "due far away: reschedule");
        assert_eq!(p.period(&cfg), base);
        assert!(!p.observe(2, 1, &cfg), "no change");
        let (_, t2) = p.schedule(2, &cfg, &mut rng);
        assert!(!p.is_live(t1) && p.is_live(t2));
        assert!(!p.observe(3, 2, &cfg), "due within a base period");
    }

    #[test]
    fn refusals_hold_promotion_with_backoff_until_the_view_changes() {
        let cfg = Config::default();
        let base = cfg.shuffle_interval;
        let mut p = Pace::default();
        let mut rng = SmallRng::seed_from_u64(2);
        for _ in 0..REFUSALS_PER_ROUND - 1 {
            p.refused(0, &cfg, &mut rng);
        }
        assert!(!p.holds(0));
        p.refused(0, &cfg, &mut rng);
        assert!(p.holds(0));
        assert!(p.hold_until() >= base / 2 && p.hold_until() <= base);
        let mut last = 0;
        for round in 1..6u32 {
            let now = p.hold_until();
            assert!(!p.holds(now));
            for _ in 0..REFUSALS_PER_ROUND {
                p.refused(now, &cfg, &mut rng);
            }
            let d = p.hold_until() - now;
            let cap = (base << round).min(MAX_HOLD_INTERVALS * base);
            assert!(d >= cap / 2 && d <= cap, "round {round}: {d}");
            last = p.hold_until();
        }
        assert!(p.holds(last - 1));
        p.observe(last - 1, 7, &cfg);
        assert!(!p.holds(last - 1), "a change of the view lifts the hold");
        p.refused(last, &cfg, &mut rng);
        assert!(!p.holds(last), "and starts a new round");
    }
}
