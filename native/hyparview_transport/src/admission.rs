//! Who gets a handshake slot, and how often we complain about those who
//! misbehave. Both are plain data structures (the actor passes `now`), so
//! their rules are tested here without sockets.
//!
//! Pending handshakes: a per-source-IP and a global limit. When either is
//! reached the *oldest* pending handshake goes, never the newest: an
//! attacker who holds connections open must keep out-pacing every real
//! handshake (which finishes in a round trip or two) to lock anyone out,
//! while refusing the newest lets a few idle sockets starve all newcomers.
//!
//! Handshakes whose dialer already proved the secret go last, and they do
//! not count against their source's limit: that limit is there so that one
//! address can't fill the table with sockets that prove nothing, while a
//! burst of real joins from one address (a host running many nodes, a
//! fleet started at once) must not evict itself. Proved handshakes are
//! bounded by the global limit. A handshake's stage is shared with the task
//! that runs it (`Stage`), so the table sees a proof or an end at once, not
//! when the actor gets to the news: under a join storm the actor's queue
//! is exactly what lags.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const PROVED: u8 = 1;
const FINISHED: u8 = 2;

/// How far one pending handshake has got, written by the task that runs it
/// (0 until it is proved).
#[derive(Debug, Default)]
pub struct Stage(AtomicU8);

impl Stage {
    /// The dialer has shown it holds the secret.
    pub fn prove(&self) {
        self.0.fetch_max(PROVED, Ordering::Relaxed);
    }

    /// The handshake is over, either way: its slot is free.
    pub fn finish(&self) {
        self.0.store(FINISHED, Ordering::Relaxed);
    }

    fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Handshakes in progress on accepted connections; `T` is what the caller
/// needs to cancel one (an abort handle).
pub struct Pending<T> {
    /// Tokens grow, so the first entry is the oldest.
    by_token: BTreeMap<u64, Slot<T>>,
    per_ip: HashMap<IpAddr, VecDeque<u64>>,
    next: u64,
    max: usize,
    max_per_ip: usize,
}

struct Slot<T> {
    ip: IpAddr,
    handle: T,
    stage: Arc<Stage>,
}

impl<T> Slot<T> {
    fn proved(&self) -> bool {
        self.stage.get() >= PROVED
    }
}

impl<T> Pending<T> {
    pub fn new(max: usize, max_per_ip: usize) -> Self {
        Pending {
            by_token: BTreeMap::new(),
            per_ip: HashMap::new(),
            next: 0,
            max: max.max(1),
            max_per_ip: max_per_ip.max(1),
        }
    }

    /// Whether a new handshake from `ip` would push out a pending one (if
    /// it has not proved the secret yet): the caller may first check
    /// whether it has (`handshake::first_flight`).
    pub fn is_full_for(&mut self, ip: IpAddr) -> bool {
        self.forget_finished();
        self.by_token.len() >= self.max || self.over_source_limit(ip).is_some()
    }

    /// Frees a slot for a new handshake from `ip`: returns what was evicted
    /// (to cancel) and the token for the new one, to `insert` once started.
    /// A newcomer that already `proved` the secret does not count against
    /// its source's limit, so it only needs a slot under the global one.
    pub fn make_room(&mut self, ip: IpAddr, proved: bool) -> (u64, Vec<T>) {
        self.forget_finished();
        let mut evicted = Vec::new();
        while let Some(victim) = self.over_source_limit(ip).filter(|_| !proved) {
            evicted.extend(self.remove(victim));
        }
        while self.by_token.len() >= self.max {
            let Some(victim) = self.victim(self.by_token.keys().copied()) else {
                break;
            };
            evicted.extend(self.remove(victim));
        }
        let token = self.next;
        self.next += 1;
        (token, evicted)
    }

    /// The pending handshakes a newcomer from `ip` would push out next,
    /// oldest first, at most `max` of them: that source's unproved ones if
    /// it is at its limit (and the newcomer is `proved` not), then the
    /// unproved ones of all sources if the table is full. The caller may
    /// check whether their dialers have proved the secret meanwhile (their
    /// message 1 waiting unread) and [`Pending::prove`] them.
    pub fn candidates(&mut self, ip: IpAddr, proved: bool, max: usize) -> Vec<u64> {
        self.forget_finished();
        let unproved = |t: &u64| self.by_token.get(t).is_some_and(|s| !s.proved());
        let mut out = Vec::new();
        if !proved && self.over_source_limit(ip).is_some() {
            if let Some(q) = self.per_ip.get(&ip) {
                out.extend(q.iter().copied().filter(unproved).take(max));
            }
        }
        if self.by_token.len() >= self.max {
            for t in self.by_token.keys().copied().filter(unproved) {
                if out.len() >= max {
                    break;
                }
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
        out.truncate(max);
        out
    }

    /// A pending handshake's dialer has proved the secret (found by the
    /// caller before its task got to it).
    pub fn prove(&self, token: u64) {
        if let Some(s) = self.by_token.get(&token) {
            s.stage.prove();
        }
    }

    /// What the caller keeps for a pending handshake.
    pub fn get(&self, token: u64) -> Option<&T> {
        self.by_token.get(&token).map(|s| &s.handle)
    }

    /// The oldest unproved handshake from `ip` if that source is at its
    /// limit of unproved ones.
    fn over_source_limit(&self, ip: IpAddr) -> Option<u64> {
        let queue = self.per_ip.get(&ip)?;
        let unproved = queue
            .iter()
            .filter(|t| self.by_token.get(t).is_some_and(|s| !s.proved()));
        let oldest = *unproved.clone().next()?;
        (unproved.count() >= self.max_per_ip).then_some(oldest)
    }

    /// The oldest of `tokens` (oldest first) that has not proved the
    /// secret, else the oldest.
    fn victim(&self, mut tokens: impl Iterator<Item = u64>) -> Option<u64> {
        let first = tokens.next()?;
        if !self.by_token.get(&first).is_some_and(|s| s.proved()) {
            return Some(first);
        }
        Some(
            tokens
                .find(|t| !self.by_token.get(t).is_some_and(|s| s.proved()))
                .unwrap_or(first),
        )
    }

    /// Slots of handshakes that ended while their news is still queued for
    /// the actor (its later `remove` finds nothing).
    fn forget_finished(&mut self) {
        let done: Vec<u64> = self
            .by_token
            .iter()
            .filter(|(_, s)| s.stage.get() == FINISHED)
            .map(|(t, _)| *t)
            .collect();
        for token in done {
            self.remove(token);
        }
    }

    pub fn insert(&mut self, token: u64, ip: IpAddr, handle: T, stage: Arc<Stage>) {
        self.by_token.insert(token, Slot { ip, handle, stage });
        self.per_ip.entry(ip).or_default().push_back(token);
    }

    /// The handshake finished (either way) or was evicted.
    pub fn remove(&mut self, token: u64) -> Option<T> {
        let Slot { ip, handle, .. } = self.by_token.remove(&token)?;
        if let Some(q) = self.per_ip.get_mut(&ip) {
            q.retain(|t| *t != token);
            if q.is_empty() {
                self.per_ip.remove(&ip);
            }
        }
        Some(handle)
    }
}

/// Per-(address, kind) report limiter: the first occurrence is reported,
/// the rest of the interval only counted, and the count reported when the
/// interval is over. Unlike a once-per-lifetime set, a false alarm (or an
/// old problem) never hides a later one for long.
pub struct Reports {
    interval: Duration,
    max: usize,
    entries: HashMap<(IpAddr, &'static str), Entry>,
}

struct Entry {
    since: Instant,
    suppressed: u64,
}

/// Addresses beyond the memory bound share this key: a scan from many
/// addresses is still reported, once per interval.
pub const MANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl Reports {
    pub fn new(interval: Duration, max: usize) -> Self {
        Reports {
            interval,
            max: max.max(1),
            entries: HashMap::new(),
        }
    }

    /// True if this occurrence is to be reported now; otherwise it is counted.
    pub fn allow(&mut self, now: Instant, ip: IpAddr, kind: &'static str) -> bool {
        let mut key = (ip, kind);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.max {
            self.expire(now);
            if self.entries.len() >= self.max {
                key = (MANY, kind);
            }
        }
        match self.entries.get_mut(&key) {
            Some(e) if now.duration_since(e.since) < self.interval => {
                e.suppressed += 1;
                false
            }
            Some(e) => {
                e.since = now;
                true
            }
            None => {
                if self.entries.len() < self.max || key.0 == MANY {
                    self.entries.insert(
                        key,
                        Entry {
                            since: now,
                            suppressed: 0,
                        },
                    );
                }
                true
            }
        }
    }

    /// Counts of occurrences left out in intervals that are now over (each
    /// once), and forgets quiet entries.
    pub fn flush(&mut self, now: Instant) -> Vec<(IpAddr, &'static str, u64)> {
        let mut out = Vec::new();
        let interval = self.interval;
        self.entries.retain(|(ip, kind), e| {
            if now.duration_since(e.since) < interval {
                return true;
            }
            if e.suppressed > 0 {
                out.push((*ip, *kind, e.suppressed));
                e.suppressed = 0;
                e.since = now;
                return true;
            }
            false
        });
        out
    }

    /// When `flush` next has a count to report, if any occurrence is
    /// waiting for one (the actor sleeps until then, not on a period).
    pub fn next_flush(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| e.suppressed > 0)
            .map(|e| e.since + self.interval)
            .min()
    }

    fn expire(&mut self, now: Instant) {
        let interval = self.interval;
        self.entries
            .retain(|_, e| e.suppressed > 0 || now.duration_since(e.since) < interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    /// Inserts a handshake from `ip` after making room; returns its token,
    /// its stage and what was evicted for it.
    fn add(
        p: &mut Pending<&'static str>,
        from: IpAddr,
        name: &'static str,
    ) -> (u64, Arc<Stage>, Vec<&'static str>) {
        let (t, ev) = p.make_room(from, false);
        let stage = Arc::new(Stage::default());
        p.insert(t, from, name, stage.clone());
        (t, stage, ev)
    }

    #[test]
    fn global_limit_evicts_the_oldest_not_the_newest() {
        let mut p = Pending::new(3, 10);
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            let (_, _, ev) = add(&mut p, ip(i as u8), name);
            assert!(ev.is_empty());
        }
        let (t, _, ev) = add(&mut p, ip(9), "d");
        assert_eq!(ev, vec!["a"]);
        assert_eq!(p.by_token.len(), 3);
        // A finished handshake frees its slot.
        assert_eq!(p.remove(t), Some("d"));
        let (_, ev) = p.make_room(ip(9), false);
        assert!(ev.is_empty());
    }

    #[test]
    fn handshakes_that_proved_the_secret_go_last() {
        let mut p = Pending::new(3, 10);
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            let (_, stage, _) = add(&mut p, ip(1), name);
            if i < 2 {
                stage.prove();
            }
        }
        let (_, stage, ev) = add(&mut p, ip(2), "d");
        assert_eq!(ev, vec!["c"], "the unproved one goes first");
        stage.prove();
        let (_, ev) = p.make_room(ip(2), false);
        assert_eq!(ev, vec!["a"], "then the oldest");
    }

    #[test]
    fn per_ip_limit_evicts_that_ips_oldest() {
        let mut p = Pending::new(100, 2);
        add(&mut p, ip(1), "x1");
        add(&mut p, ip(2), "other");
        add(&mut p, ip(1), "x2");
        let (_, _, ev) = add(&mut p, ip(1), "x3");
        assert_eq!(ev, vec!["x1"]);
        assert_eq!(p.by_token.len(), 3);
    }

    #[test]
    fn proved_handshakes_do_not_count_against_their_source() {
        // A burst of real joins from one address: each proves the secret
        // soon after it starts, so none is evicted below the global limit.
        let mut p = Pending::new(10, 2);
        for name in ["j1", "j2", "j3", "j4", "j5"] {
            let (_, stage, ev) = add(&mut p, ip(1), name);
            assert!(ev.is_empty(), "{name} evicted {ev:?}");
            stage.prove();
        }
        // Unproved ones from that address still meet its limit.
        let (_, _, ev) = add(&mut p, ip(1), "idle1");
        assert!(ev.is_empty());
        let (_, _, ev) = add(&mut p, ip(1), "idle2");
        assert!(ev.is_empty());
        let (_, _, ev) = add(&mut p, ip(1), "idle3");
        assert_eq!(ev, vec!["idle1"], "two unproved from one source at most");
        assert_eq!(p.by_token.len(), 7);
    }

    #[test]
    fn candidates_are_who_would_go_next_and_proving_one_spares_it() {
        let mut p = Pending::new(4, 2);
        let (a, _, _) = add(&mut p, ip(1), "a");
        let (b, _, _) = add(&mut p, ip(1), "b");
        // ip 1 is at its limit: its unproved, oldest first.
        assert_eq!(p.candidates(ip(1), false, 8), vec![a, b]);
        // A newcomer that proved the secret does not count against it.
        assert!(p.candidates(ip(1), true, 8).is_empty());
        assert!(p.candidates(ip(2), false, 8).is_empty());
        // `a`'s message 1 turned out to be waiting: it is spared.
        p.prove(a);
        assert_eq!(p.candidates(ip(1), false, 8), Vec::<u64>::new());
        let (_, _, ev) = add(&mut p, ip(1), "c");
        assert!(ev.is_empty(), "evicted {ev:?}");
        // The table is full: every source's unproved, oldest first.
        let (d, _, _) = add(&mut p, ip(2), "d");
        let c = d - 1;
        assert_eq!(p.candidates(ip(3), false, 8), vec![b, c, d]);
        assert_eq!(p.candidates(ip(3), false, 1), vec![b]);
        assert_eq!(p.get(b), Some(&"b"));
    }

    #[test]
    fn a_finished_handshake_frees_its_slot_before_the_actor_hears_of_it() {
        let mut p = Pending::new(2, 2);
        let (t, stage, _) = add(&mut p, ip(1), "done");
        add(&mut p, ip(1), "b");
        stage.finish();
        let (_, _, ev) = add(&mut p, ip(1), "c");
        assert!(ev.is_empty(), "evicted {ev:?}");
        // The actor's late remove of the finished one finds nothing.
        assert_eq!(p.remove(t), None);
        assert_eq!(p.by_token.len(), 2);
    }

    #[test]
    fn reports_once_per_interval_with_a_count() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut r = Reports::new(Duration::from_secs(60), 2);
        assert!(r.allow(t0, ip(1), "bad_auth"));
        // Nothing left out yet: nothing to flush, no deadline.
        assert_eq!(r.next_flush(), None);
        assert!(!r.allow(t0 + s, ip(1), "bad_auth"));
        assert_eq!(r.next_flush(), Some(t0 + 60 * s));
        assert!(!r.allow(t0 + 2 * s, ip(1), "bad_auth"));
        // Another kind from the same address is not hidden by the first.
        assert!(r.allow(t0 + 2 * s, ip(1), "timeout"));
        assert!(r.flush(t0 + 30 * s).is_empty());
        assert_eq!(r.flush(t0 + 61 * s), vec![(ip(1), "bad_auth", 2)]);
        assert_eq!(r.next_flush(), None);
        // The next interval starts fresh.
        assert!(r.allow(t0 + 122 * s, ip(1), "bad_auth"));
    }

    #[test]
    fn reports_memory_is_bounded_and_overflow_shares_a_key() {
        let t0 = Instant::now();
        let mut r = Reports::new(Duration::from_secs(60), 2);
        assert!(r.allow(t0, ip(1), "k"));
        assert!(r.allow(t0, ip(2), "k"));
        assert!(r.allow(t0, ip(3), "k"), "first overflow is reported");
        assert!(!r.allow(t0, ip(4), "k"), "later ones share its interval");
        assert!(r.entries.len() <= 3);
    }
}
