//! Repair beyond the paper: merge requests and contact probes.
//!
//! Modification from paper — *merge*: every `promotion_interval` (the merge
//! tick) a node may send one `merge` NEIGHBOR (a *merge request*), which
//! even a full receiver accepts by evicting a random peer. Targets, in
//! order (see [`Merge::pick`]):
//! - escalation: a node short for a whole interval whose low-priority
//!   promotions were refused at least REFUSALS_BEFORE_ESCALATION times asks
//!   a random passive peer (half the time when it also has suspects). Its
//!   passive peers are alive but full: a small island left by a massive
//!   failure knows only nodes of the big component, which refuse low
//!   priority for good;
//! - a random suspect (always when short, 1 tick in MERGE_ODDS when full): a
//!   healed partition shows up as a suspect that answers again;
//! - when full, 1 tick in PASSIVE_MERGE_ODDS, a random passive peer: this
//!   merges halves that split without any failure (e.g. through evictions
//!   under high latency), at the cost of one link swap per node every ~16
//!   minutes by default, less the ticks whose target is proven in our own
//!   component (`crossing.rs`), which are not sent: at 256 simulated idle
//!   nodes that removes about a third of the link swaps.
//!
//! After a merge (either side) the node stays quiet for 4 intervals.
//!
//! Modification from paper — *contact merge*: a node short for a whole
//! shuffle interval that has a fresh contact (one a replacement of the
//! contact list brought, i.e. discovery, and not used yet) sends it a merge
//! request, at most one per shuffle interval, whatever the merge tick's
//! quiet period. This is how a small island left by a massive failure
//! reaches the rest: its passive views hold only its own members, dead
//! peers and full nodes of the big component, which refuse low priority,
//! so promotion cannot leave the island, and the escalation waits for
//! refusals, a promotion interval and a merge tick outside a quiet period
//! (which a crossing just before the failure extends by up to 4
//! intervals). Discovery's contacts are drawn from the live nodes, so the
//! contact is almost surely outside a small island. The contacts come from
//! the node's own configuration, never from gossip, and each is used once:
//! other nodes cannot make it send these (see `quota.rs` for what they can
//! make it dial). Without contact replacement nothing here runs.
//! An isolated node normally JOINs instead (its rejoin), but the rejoin
//! waits until no request is in flight, and a node that lost its whole
//! active view to a massive failure promotes from a passive view and a
//! reserve of mostly dead peers, five at a time, each failing only after a
//! dial timeout: that can take 50 s or more (traced in the simulator). Such
//! a node sends the contact merge too, with high priority, which a live
//! contact does not refuse.
//!
//! Modification from paper — *contact probe*: a node that still has
//! neighbours but a short active view and an empty passive view (a cold
//! overlay cut by a partition) cannot learn anyone new from shuffles with
//! the few peers it holds. It sends its contacts, one per delay, a direct
//! SHUFFLE with TTL 1 (a *probe*): the reply and the receiver's own
//! integration refill a passive view and normal promotion follows. Probe
//! rounds back off like rejoins but never come sooner than a shuffle
//! period. Probes draw from their own RNG stream, so a probe timer that
//! sends nothing leaves every other random choice unchanged.

use crate::{Config, Identity, Millis, Peer, PeerId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A full node sends a merge request to a suspect on one tick in this many.
const MERGE_ODDS: u32 = 4;
/// A full node with no suspect picked asks a random passive peer on one
/// tick in this many.
const PASSIVE_MERGE_ODDS: u32 = 32;
/// Refused low-priority promotions before a short node escalates.
const REFUSALS_BEFORE_ESCALATION: u32 = 2;

/// `min` doubled `attempts` times, capped at `max`, with jitter in [d/2, d]
/// so nodes do not retry in lockstep.
pub(crate) fn backoff(min: Millis, max: Millis, attempts: u32, rng: &mut SmallRng) -> Millis {
    let mut d = min;
    for _ in 0..attempts.min(64) {
        d = d.saturating_mul(2);
        if d >= max {
            break;
        }
    }
    let d = d.min(max);
    rng.gen_range(d / 2..=d).max(1)
}

/// `interval` ± 25 %.
pub(crate) fn jittered(interval: Millis, rng: &mut SmallRng) -> Millis {
    let lo = interval - interval / 4;
    let hi = interval.saturating_add(interval / 4);
    rng.gen_range(lo..=hi).max(1)
}

/// Where a merge request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MergeTarget {
    Passive(usize),
    Suspect(usize),
}

/// What [`Merge::pick`] needs to know about the views.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ViewSizes {
    pub(crate) full: bool,
    pub(crate) passive: usize,
    pub(crate) suspects: usize,
}

#[derive(Default)]
pub(crate) struct Merge {
    quiet_until: Millis,
    /// Since when the active view has not been full (None while full).
    short_since: Option<Millis>,
    /// Low-priority promotions refused since the view was last full or
    /// since the last escalation.
    refusals: u32,
    /// When the last contact merge was sent.
    contact_sent: Option<Millis>,
}

impl Merge {
    /// Called after every input with the view's fullness.
    pub(crate) fn observe(&mut self, now: Millis, full: bool) {
        if full {
            self.short_since = None;
            self.refusals = 0;
        } else if self.short_since.is_none() {
            self.short_since = Some(now);
        }
    }

    /// A contact merge may go now: short for a whole shuffle interval, and
    /// none sent in the last one.
    pub(crate) fn contact_due(&self, now: Millis, config: &Config) -> bool {
        let i = config.shuffle_interval;
        self.short_since.is_some_and(|t| now.saturating_sub(t) >= i)
            && self.contact_sent.is_none_or(|t| now.saturating_sub(t) >= i)
    }

    pub(crate) fn contact_merge_sent(&mut self, now: Millis) {
        self.contact_sent = Some(now);
    }

    pub(crate) fn refused(&mut self) {
        self.refusals = self.refusals.saturating_add(1);
    }

    /// A merge link was made (by us or with us): stay quiet a while.
    pub(crate) fn merged(&mut self, now: Millis, config: &Config) {
        self.quiet_until = now.saturating_add(config.promotion_interval.saturating_mul(4));
    }

    /// The merge tick: whom to send a merge request to, if anyone.
    pub(crate) fn pick(
        &mut self,
        now: Millis,
        views: ViewSizes,
        config: &Config,
        rng: &mut SmallRng,
    ) -> Option<MergeTarget> {
        if now < self.quiet_until {
            return None;
        }
        let escalate = !views.full
            && views.passive > 0
            && self.refusals >= REFUSALS_BEFORE_ESCALATION
            && self
                .short_since
                .is_some_and(|t| now.saturating_sub(t) >= config.promotion_interval);
        if escalate && (views.suspects == 0 || rng.gen_bool(0.5)) {
            self.refusals = 0;
            Some(MergeTarget::Passive(rng.gen_range(0..views.passive)))
        } else if views.suspects > 0 && (!views.full || rng.gen_ratio(1, MERGE_ODDS)) {
            Some(MergeTarget::Suspect(rng.gen_range(0..views.suspects)))
        } else if views.full && views.passive > 0 && rng.gen_ratio(1, PASSIVE_MERGE_ODDS) {
            Some(MergeTarget::Passive(rng.gen_range(0..views.passive)))
        } else {
            None
        }
    }
}

pub(crate) struct Probe<I: Identity = PeerId> {
    rng: SmallRng,
    /// Names the live probe timer (None: none scheduled). One scheduled
    /// before the need went away, even if it came back since, is ignored.
    scheduled: Option<u64>,
    token: u64,
    /// Rounds started (each tries every contact not held once).
    rounds: u32,
    /// Contacts left to probe in this round (popped from the back).
    queue: Vec<Peer<I>>,
    /// The contact our last probe went to, until it answers.
    pub(crate) awaiting: Option<I>,
}

impl<I: Identity> Probe<I> {
    pub(crate) fn new(seed: u64) -> Probe<I> {
        Probe {
            rng: SmallRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            scheduled: None,
            token: 0,
            rounds: 0,
            queue: Vec::new(),
            awaiting: None,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.scheduled = None;
        self.rounds = 0;
        self.queue = Vec::new();
        self.awaiting = None;
    }

    /// The neighbourhood shrank or the contacts changed: the next round
    /// starts promptly and from the current contacts.
    pub(crate) fn restart_rounds(&mut self) {
        self.rounds = 0;
        self.queue = Vec::new();
    }

    pub(crate) fn is_scheduled(&self) -> bool {
        self.scheduled.is_some()
    }

    pub(crate) fn unschedule(&mut self) {
        self.scheduled = None;
    }

    /// Schedules the next probe: returns its delay and token. The rejoin
    /// backoff per round, never sooner than a shuffle period: shuffles and
    /// the JOIN seed normally fill the passive view, and a node still short
    /// after that is really stuck.
    pub(crate) fn schedule(&mut self, config: &Config) -> (Millis, u64) {
        let b = backoff(
            config.rejoin_backoff_min,
            config.rejoin_backoff_max,
            self.rounds.saturating_sub(1),
            &mut self.rng,
        );
        let i = config.shuffle_interval;
        let s = self.rng.gen_range(i - i / 4..=i.saturating_add(i / 4));
        self.token = self.token.wrapping_add(1);
        self.scheduled = Some(self.token);
        (b.max(s).max(1), self.token)
    }

    /// The probe timer `token` fired: true when it is the live one.
    pub(crate) fn fired(&mut self, token: u64) -> bool {
        if self.scheduled != Some(token) {
            return false;
        }
        self.scheduled = None;
        true
    }

    /// The next contact to probe, skipping those `held`; starts a new round
    /// (shuffled) when this one is exhausted. None: nobody to probe.
    pub(crate) fn next_target(
        &mut self,
        contacts: &[Peer<I>],
        held: impl Fn(&I) -> bool,
    ) -> Option<Peer<I>> {
        for _ in 0..2 {
            while let Some(p) = self.queue.pop() {
                if !held(&p.id) {
                    return Some(p);
                }
            }
            self.rounds = self.rounds.saturating_add(1);
            let mut queue: Vec<Peer<I>> = Vec::new();
            for p in contacts {
                if !held(&p.id) && !queue.iter().any(|q| q.id == p.id) {
                    queue.push(p.clone());
                }
            }
            if queue.is_empty() {
                return None;
            }
            for i in (1..queue.len()).rev() {
                let j = self.rng.gen_range(0..=i);
                queue.swap(i, j);
            }
            self.queue = queue;
        }
        None
    }

    /// `k` random indexes below `n` from the probe stream (the active
    /// sample a probe carries).
    pub(crate) fn sample(&mut self, n: usize, k: usize) -> rand::seq::index::IndexVec {
        rand::seq::index::sample(&mut self.rng, n, k.min(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn peer(id: &str) -> Peer {
        Peer::new(id, SocketAddr::from(([127, 0, 0, 1], 1)), 1)
    }

    #[test]
    fn backoff_doubles_within_bounds() {
        let mut rng = SmallRng::seed_from_u64(5);
        for attempts in 0..80 {
            let d = backoff(500, 30_000, attempts, &mut rng);
            let cap = (500u64 << attempts.min(6)).min(30_000);
            assert!(d >= cap / 2 && d <= cap, "{attempts}: {d}");
        }
    }

    #[test]
    fn a_quiet_period_follows_a_merge() {
        let cfg = Config::default();
        let mut m = Merge::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let short = ViewSizes {
            full: false,
            passive: 0,
            suspects: 3,
        };
        assert!(matches!(
            m.pick(0, short, &cfg, &mut rng),
            Some(MergeTarget::Suspect(i)) if i < 3
        ));
        m.merged(0, &cfg);
        assert_eq!(m.pick(cfg.promotion_interval, short, &cfg, &mut rng), None);
        assert!(m
            .pick(4 * cfg.promotion_interval, short, &cfg, &mut rng)
            .is_some());
    }

    #[test]
    fn a_short_refused_node_escalates_to_a_passive_peer_after_an_interval() {
        let cfg = Config::default();
        let mut m = Merge::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let short = ViewSizes {
            full: false,
            passive: 10,
            suspects: 0,
        };
        m.observe(0, false);
        m.refused();
        m.refused();
        assert_eq!(
            m.pick(1, short, &cfg, &mut rng),
            None,
            "not short long enough"
        );
        let t = cfg.promotion_interval;
        assert!(matches!(
            m.pick(t, short, &cfg, &mut rng),
            Some(MergeTarget::Passive(_))
        ));
        assert_eq!(m.pick(t, short, &cfg, &mut rng), None, "refusals reset");
        m.observe(t, true);
        m.refused();
        m.refused();
        m.observe(t + 1, false);
        assert_eq!(
            m.pick(t + 2, short, &cfg, &mut rng),
            None,
            "short again only now"
        );
    }

    #[test]
    fn a_contact_merge_waits_a_shuffle_interval_short_and_one_between() {
        let cfg = Config::default();
        let i = cfg.shuffle_interval;
        let mut m = Merge::default();
        m.observe(0, true);
        assert!(!m.contact_due(10 * i, &cfg), "full");
        m.observe(1_000, false);
        assert!(!m.contact_due(1_000 + i - 1, &cfg));
        assert!(m.contact_due(1_000 + i, &cfg));
        m.contact_merge_sent(1_000 + i);
        assert!(!m.contact_due(1_000 + 2 * i - 1, &cfg), "one per interval");
        assert!(m.contact_due(1_000 + 2 * i, &cfg));
        // A quiet period after a merge does not hold it back.
        m.merged(1_000 + 2 * i, &cfg);
        assert!(m.contact_due(1_000 + 2 * i, &cfg));
        m.observe(5 * i, true);
        m.observe(5 * i + 1, false);
        assert!(!m.contact_due(5 * i + 2, &cfg), "short again only now");
    }

    #[test]
    fn a_full_node_merges_rarely() {
        let cfg = Config::default();
        let mut m = Merge::default();
        let mut rng = SmallRng::seed_from_u64(9);
        let full = ViewSizes {
            full: true,
            passive: 30,
            suspects: 0,
        };
        let n = (0..3200)
            .filter(|_| m.pick(0, full, &cfg, &mut rng).is_some())
            .count();
        assert!((50..=160).contains(&n), "{n} of 3200 ticks (1 in 32)");
    }

    #[test]
    fn probes_go_to_each_unheld_contact_once_per_round() {
        let mut p: Probe = Probe::new(1);
        let contacts = [peer("a"), peer("b"), peer("c"), peer("b")];
        let held = |id: &PeerId| id == "c";
        let mut round: Vec<String> = (0..2)
            .map(|_| p.next_target(&contacts, held).unwrap().id.to_string())
            .collect();
        round.sort();
        assert_eq!(round, ["a", "b"]);
        assert_eq!(p.rounds, 1);
        assert!(p.next_target(&contacts, held).is_some());
        assert_eq!(p.rounds, 2, "a new round");
        assert!(p.next_target(&contacts, |_| true).is_none());
    }

    #[test]
    fn only_the_live_probe_timer_counts_and_waits_a_shuffle_period() {
        let cfg = Config::default();
        let mut p: Probe = Probe::new(1);
        let (d1, t1) = p.schedule(&cfg);
        assert!(d1 >= cfg.shuffle_interval * 3 / 4);
        let (_, t2) = p.schedule(&cfg);
        assert!(!p.fired(t1));
        assert!(p.fired(t2));
        assert!(!p.is_scheduled());
    }
}
