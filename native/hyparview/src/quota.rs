//! Budgets on what other nodes can make this node do, beyond the paper: a
//! node that holds the secret but is buggy or compromised must not be able
//! to take over the passive view with its SHUFFLEs, nor turn the node into
//! a scanner of addresses it supplies.
//!
//! - [`Bucket`]: a token bucket refilled at a steady rate. One bounds the
//!   NEIGHBOR requests (dials) to peers learned from gossip: each failed
//!   dial would otherwise promote the next attacker-supplied candidate at
//!   once.
//! - [`SenderBudgets`]: one bucket per sender (the authenticated `from`),
//!   bounding the new passive entries its unsolicited SHUFFLEs can bring.
//!   The table is bounded; a sender past the bound takes the slot of the
//!   one heard from longest ago.

use crate::{Config, Identity, Millis, PeerId};

/// Senders whose budget is remembered.
const SENDERS: usize = 16;
/// A sender's budget refills over this many shuffle intervals: an honest
/// neighbour ends about one SHUFFLE walk at us per interval among all our
/// neighbours, so it never runs dry.
const SENDER_REFILL_INTERVALS: u64 = 4;

/// The peers one honest SHUFFLE carries (ka + kp + the origin): the most
/// passive entries one message may replace, and a sender's burst.
pub(crate) fn shuffle_size(c: &Config) -> u64 {
    (c.shuffle_active_count + c.shuffle_passive_count + 1) as u64
}

/// Per [`sender_period`], a sender brings at most [`shuffle_size`] new
/// passive entries.
pub(crate) fn sender_period(c: &Config) -> Millis {
    c.shuffle_interval.saturating_mul(SENDER_REFILL_INTERVALS)
}

/// Dials to gossiped candidates: a whole passive view's worth per shuffle
/// interval, enough to walk a passive view that died (95 % failures) and
/// far below a scanner's rate.
pub(crate) fn dial_burst(c: &Config) -> u64 {
    c.passive_view_size.max(c.active_view_size) as u64
}

/// A token bucket holding at most `cap` tokens, refilled with `cap` tokens
/// every `per` milliseconds (pro rata).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    tokens: u64,
    at: Millis,
}

impl Bucket {
    pub(crate) fn full(now: Millis, cap: u64) -> Bucket {
        Bucket {
            tokens: cap,
            at: now,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Millis, cap: u64, per: Millis) -> bool {
        self.refill(now, cap, per);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    fn refill(&mut self, now: Millis, cap: u64, per: Millis) {
        let elapsed = now.saturating_sub(self.at);
        let per = per.max(1);
        let add = elapsed.saturating_mul(cap) / per;
        if add == 0 {
            // Time runs backwards or too little passed: keep `at`, so the
            // fractions add up.
            self.at = self.at.min(now);
            return;
        }
        self.tokens = self.tokens.saturating_add(add).min(cap);
        self.at = if self.tokens == cap {
            now
        } else {
            self.at + add.saturating_mul(per) / cap.max(1)
        };
    }
}

/// A [`Bucket`] per sender, for a bounded number of senders.
pub(crate) struct SenderBudgets<I: Identity = PeerId> {
    slots: Vec<(I, Bucket)>,
}

impl<I: Identity> Default for SenderBudgets<I> {
    fn default() -> Self {
        SenderBudgets { slots: Vec::new() }
    }
}

impl<I: Identity> SenderBudgets<I> {
    /// Takes one token from `sender`'s bucket (a new sender starts full).
    pub(crate) fn take(&mut self, sender: &I, now: Millis, cap: u64, per: Millis) -> bool {
        if let Some((_, b)) = self.slots.iter_mut().find(|(id, _)| id == sender) {
            return b.take(now, cap, per);
        }
        if self.slots.len() >= SENDERS {
            let oldest = (0..self.slots.len())
                .min_by_key(|&i| self.slots[i].1.at)
                .unwrap_or(0);
            self.slots.swap_remove(oldest);
        }
        let mut b = Bucket::full(now, cap);
        let ok = b.take(now, cap, per);
        self.slots.push((sender.clone(), b));
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut b = Bucket::full(0, 4);
        assert_eq!((0..10).filter(|_| b.take(0, 4, 1_000)).count(), 4);
        // A quarter of the period brings one token back, not more.
        assert!(b.take(250, 4, 1_000));
        assert!(!b.take(260, 4, 1_000));
        // Small steps add up.
        let granted = (0..100).filter(|i| b.take(300 + i * 10, 4, 1_000)).count();
        assert!((3..=5).contains(&granted), "{granted}");
        // A long pause refills to the cap only.
        assert_eq!((0..10).filter(|_| b.take(100_000, 4, 1_000)).count(), 4);
    }

    #[test]
    fn a_bucket_survives_time_going_backwards() {
        let mut b = Bucket::full(1_000, 2);
        assert!(b.take(1_000, 2, 100) && b.take(1_000, 2, 100));
        assert!(!b.take(10, 2, 100));
        assert!(b.take(2_000, 2, 100));
    }

    #[test]
    fn senders_have_their_own_bounded_budgets() {
        let mut s = SenderBudgets::default();
        let a = PeerId::new("a");
        assert_eq!((0..10).filter(|_| s.take(&a, 0, 3, 1_000)).count(), 3);
        assert!(s.take(&PeerId::new("b"), 0, 3, 1_000), "b has its own");
        for i in 0..100 {
            s.take(&PeerId::new(&format!("x{i}")), 1, 3, 1_000);
        }
        assert!(s.slots.len() <= SENDERS);
    }
}
