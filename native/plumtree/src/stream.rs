//! Per-origin FIFO delivery and duplicate detection (the paper's
//! `ReceivedMsgs` set, made bounded).
//!
//! Modification from paper: Plumtree delivers in arrival order and keeps
//! every received id. Here each origin incarnation is a *stream* with a
//! high-water mark `next` (every seq below it is known: delivered or
//! skipped) and a small buffer of messages that arrived ahead of `next`.
//! Memory per origin is O(`max_buffered_per_origin`), whatever the number
//! of messages, and the number of origins is capped by `max_origins`.
//!
//! Delivery contract, per origin:
//! - seqs are delivered in increasing order, each at most once while the
//!   origin's stream is remembered;
//! - a node that first hears of an origin incarnation through seq `s`
//!   starts its stream at `s - w`, `w = min(s, max_buffered_per_origin)`:
//!   `s` waits (like any message behind a gap) at most `gap_timeout` for
//!   the `w` seqs before it, which overtaken messages (an origin's first
//!   broadcasts race while the tree forms) can still fill. Then delivery
//!   goes on from the lowest seq received; seqs below `s - w`, and those of
//!   the window that did not come, are never delivered here and are not
//!   reported as gaps (this node was not listening yet);
//! - a message that arrives ahead of a missing one waits at most
//!   `gap_timeout` (or until the buffer bounds are hit): then the missing
//!   seqs before it are skipped and reported (`Event::GapSkipped`); a
//!   skipped seq that arrives later is treated as a duplicate;
//! - a newer incarnation of an origin flushes the old stream (its buffered
//!   messages are delivered, gaps skipped) and starts a new one as above;
//!   messages of older incarnations are dropped;
//! - a forgotten origin (more than `max_origins` active) is flushed too,
//!   and starts afresh if heard again: a duplicate of one of its messages
//!   still in flight could then be delivered a second time. Size
//!   `max_origins` above the number of nodes to rule this out.

use crate::io::{Event, Output, SkipReason, Stats, Timer, TimerKind};
use crate::message::MessageId;
use crate::{Millis, Round};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;

/// Where a message id stands against what this node has seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Not seen yet: deliver (or buffer) and forward.
    New,
    /// Seen, skipped, or before the stream's start: a duplicate.
    Known,
    /// From an older incarnation than the one followed.
    Stale,
}

/// Where outputs and counters go.
pub(crate) struct Sink<'a, P> {
    pub out: &'a mut VecDeque<Output<P>>,
    pub stats: &'a mut Stats,
}

struct Pending {
    payload: Bytes,
    hops: Round,
    arrived: Millis,
}

struct Stream {
    incarnation: u64,
    /// Every seq below is known (delivered or skipped).
    next: u64,
    /// Messages ahead of `next`, by seq.
    buffer: BTreeMap<u64, Pending>,
    bytes: usize,
    last_active: Millis,
    /// When the pending gap timer fires, if one is pending.
    timer_due: Option<Millis>,
    /// The first seq heard: gaps below it are not reported.
    first_heard: u64,
}

impl Stream {
    /// A stream first heard through `seq`, waiting for `window` seqs before.
    fn new(incarnation: u64, seq: u64, window: usize, now: Millis) -> Stream {
        Stream {
            incarnation,
            next: seq.saturating_sub(window as u64),
            first_heard: seq,
            buffer: BTreeMap::new(),
            bytes: 0,
            last_active: now,
            timer_due: None,
        }
    }

    fn deliver<P: Clone>(
        &mut self,
        origin: &P,
        seq: u64,
        hops: Round,
        payload: Bytes,
        sink: &mut Sink<P>,
    ) {
        sink.stats.delivered += 1;
        sink.out.push_back(Output::Deliver {
            origin: origin.clone(),
            incarnation: self.incarnation,
            seq,
            hops,
            payload,
        });
        // seq < u64::MAX is checked on entry, so this cannot overflow.
        self.next = seq.saturating_add(1);
    }

    /// Delivers the buffered run that starts at `next`; returns bytes freed.
    fn drain_ready<P: Clone>(&mut self, origin: &P, sink: &mut Sink<P>) -> usize {
        let mut freed = 0;
        while let Some(p) = self.buffer.remove(&self.next) {
            freed += p.payload.len();
            self.deliver(origin, self.next, p.hops, p.payload, sink);
        }
        self.bytes -= freed;
        freed
    }

    /// Skips every gap up to and including buffered seq `upto`, delivering
    /// what is buffered on the way; returns bytes freed.
    fn flush_through<P: Clone>(
        &mut self,
        origin: &P,
        upto: u64,
        reason: SkipReason,
        sink: &mut Sink<P>,
    ) -> usize {
        let mut freed = 0;
        while let Some((&first, _)) = self.buffer.first_key_value() {
            if first > upto {
                break;
            }
            let from = self.next.max(self.first_heard);
            if first > from {
                let count = first - from;
                sink.stats.gap_skipped = sink.stats.gap_skipped.saturating_add(count);
                sink.out.push_back(Output::Event(Event::GapSkipped {
                    origin: origin.clone(),
                    incarnation: self.incarnation,
                    first_seq: from,
                    count,
                    reason,
                }));
            }
            self.next = self.next.max(first);
            freed += self.drain_ready(origin, sink);
        }
        freed
    }
}

pub(crate) struct Streams<P> {
    map: HashMap<P, Stream>,
    /// Payload bytes buffered over all streams.
    bytes: usize,
    max_per_origin: usize,
    max_bytes: usize,
    max_origins: usize,
    gap_timeout: Millis,
}

impl<P: Clone + Eq + Hash + Ord> Streams<P> {
    pub fn new(
        max_per_origin: usize,
        max_bytes: usize,
        max_origins: usize,
        gap_timeout: Millis,
    ) -> Streams<P> {
        Streams {
            map: HashMap::new(),
            bytes: 0,
            max_per_origin,
            max_bytes,
            max_origins,
            gap_timeout,
        }
    }

    pub fn classify(&self, id: &MessageId<P>) -> Status {
        match self.map.get(&id.origin) {
            None => Status::New,
            Some(s) if id.incarnation < s.incarnation => Status::Stale,
            Some(s) if id.incarnation > s.incarnation => Status::New,
            Some(s) if id.seq < s.next || s.buffer.contains_key(&id.seq) => Status::Known,
            Some(_) => Status::New,
        }
    }

    /// Takes a message whose status is [`Status::New`] (and seq below
    /// `u64::MAX`): delivers it and what it unblocks, or buffers it.
    pub fn accept(
        &mut self,
        now: Millis,
        id: &MessageId<P>,
        hops: Round,
        payload: Bytes,
        sink: &mut Sink<P>,
    ) {
        if self.classify(id) != Status::New || id.seq == u64::MAX {
            return;
        }
        let origin = &id.origin;
        if !self.map.contains_key(origin) {
            if self.map.len() >= self.max_origins {
                self.evict(sink);
            }
            self.map.insert(
                origin.clone(),
                Stream::new(id.incarnation, id.seq, self.max_per_origin, now),
            );
        }
        let Some(s) = self.map.get_mut(origin) else {
            return;
        };
        let mut freed = 0;
        if id.incarnation > s.incarnation {
            freed += s.flush_through(origin, u64::MAX, SkipReason::NewIncarnation, sink);
            *s = Stream::new(id.incarnation, id.seq, self.max_per_origin, now);
        }
        s.last_active = now;
        if id.seq == s.next {
            s.deliver(origin, id.seq, hops, payload, sink);
            freed += s.drain_ready(origin, sink);
        } else {
            self.bytes += payload.len();
            s.bytes += payload.len();
            s.buffer.insert(
                id.seq,
                Pending {
                    payload,
                    hops,
                    arrived: now,
                },
            );
            if s.buffer.len() > self.max_per_origin {
                if let Some((&first, _)) = s.buffer.first_key_value() {
                    freed += s.flush_through(origin, first, SkipReason::BufferFull, sink);
                }
            }
            if s.timer_due.is_none() && !s.buffer.is_empty() {
                s.timer_due = Some(now.saturating_add(self.gap_timeout));
                sink.out
                    .push_back(gap_timer(origin, s.incarnation, self.gap_timeout));
            }
        }
        self.bytes -= freed;
        while self.bytes > self.max_bytes {
            // Flush the stream holding most (ties: the smallest origin, so
            // the choice is deterministic).
            let Some(fullest) = self
                .map
                .iter()
                .filter(|(_, s)| s.bytes > 0)
                .max_by(|a, b| a.1.bytes.cmp(&b.1.bytes).then(b.0.cmp(a.0)))
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            if let Some(s) = self.map.get_mut(&fullest) {
                self.bytes -= s.flush_through(&fullest, u64::MAX, SkipReason::BufferFull, sink);
            }
        }
    }

    /// The gap timer of (`origin`, `incarnation`) fired: skip the gaps in
    /// front of every message that has waited `gap_timeout`.
    pub fn on_gap_timer(&mut self, now: Millis, origin: &P, incarnation: u64, sink: &mut Sink<P>) {
        let Some(s) = self.map.get_mut(origin) else {
            return;
        };
        if s.incarnation != incarnation || s.timer_due.is_some_and(|due| due > now) {
            return;
        }
        s.timer_due = None;
        let gap_timeout = self.gap_timeout;
        let cut = s
            .buffer
            .iter()
            .filter(|(_, p)| p.arrived.saturating_add(gap_timeout) <= now)
            .map(|(&seq, _)| seq)
            .last();
        if let Some(cut) = cut {
            self.bytes -= s.flush_through(origin, cut, SkipReason::Timeout, sink);
        }
        if let Some(first_arrival) = s.buffer.values().map(|p| p.arrived).min() {
            let due = first_arrival.saturating_add(gap_timeout);
            s.timer_due = Some(due);
            sink.out.push_back(gap_timer(
                origin,
                incarnation,
                due.saturating_sub(now).max(1),
            ));
        }
    }

    /// Forgets the least recently active eighth of the streams (at least
    /// one), flushing their buffers: amortised O(log n) per new origin.
    fn evict(&mut self, sink: &mut Sink<P>) {
        let mut by_age: Vec<(Millis, P)> = self
            .map
            .iter()
            .map(|(p, s)| (s.last_active, p.clone()))
            .collect();
        by_age.sort();
        let count = (by_age.len() / 8).max(1);
        for (_, origin) in by_age.into_iter().take(count) {
            if let Some(mut s) = self.map.remove(&origin) {
                self.bytes -= s.flush_through(&origin, u64::MAX, SkipReason::Evicted, sink);
                sink.stats.streams_evicted += 1;
            }
        }
    }

    /// Origins remembered.
    /// When `origin`'s stream last accepted a message, if it is followed.
    pub fn last_active(&self, origin: &P) -> Option<Millis> {
        self.map.get(origin).map(|s| s.last_active)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Messages waiting behind a gap, over all origins.
    pub fn buffered_messages(&self) -> usize {
        self.map.values().map(|s| s.buffer.len()).sum()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }
}

fn gap_timer<P: Clone>(origin: &P, incarnation: u64, after: Millis) -> Output<P> {
    Output::SetTimer {
        after,
        timer: Timer(TimerKind::Gap {
            origin: origin.clone(),
            incarnation,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Harness {
        streams: Streams<u32>,
        out: VecDeque<Output<u32>>,
        stats: Stats,
    }

    impl Harness {
        fn new(per_origin: usize, bytes: usize, origins: usize) -> Harness {
            Harness {
                streams: Streams::new(per_origin, bytes, origins, 100),
                out: VecDeque::new(),
                stats: Stats::default(),
            }
        }

        fn accept(&mut self, now: Millis, origin: u32, seq: u64) -> Vec<u64> {
            self.accept_sized(now, origin, seq, 1)
        }

        fn accept_sized(&mut self, now: Millis, origin: u32, seq: u64, len: usize) -> Vec<u64> {
            let id = MessageId {
                origin,
                incarnation: 0,
                seq,
            };
            let mut sink = Sink {
                out: &mut self.out,
                stats: &mut self.stats,
            };
            self.streams
                .accept(now, &id, 1, Bytes::from(vec![0; len]), &mut sink);
            self.delivered()
        }

        fn fire(&mut self, now: Millis, origin: u32) -> Vec<u64> {
            let mut sink = Sink {
                out: &mut self.out,
                stats: &mut self.stats,
            };
            self.streams.on_gap_timer(now, &origin, 0, &mut sink);
            self.delivered()
        }

        fn delivered(&mut self) -> Vec<u64> {
            let seqs = self
                .out
                .iter()
                .filter_map(|o| match o {
                    Output::Deliver { seq, .. } => Some(*seq),
                    _ => None,
                })
                .collect();
            self.out.retain(|o| !matches!(o, Output::Deliver { .. }));
            seqs
        }

        fn skips(&mut self) -> Vec<(u64, u64, SkipReason)> {
            let skips = self
                .out
                .iter()
                .filter_map(|o| match o {
                    Output::Event(Event::GapSkipped {
                        first_seq,
                        count,
                        reason,
                        ..
                    }) => Some((*first_seq, *count, *reason)),
                    _ => None,
                })
                .collect();
            self.out.clear();
            skips
        }

        fn status(&self, origin: u32, seq: u64) -> Status {
            self.streams.classify(&MessageId {
                origin,
                incarnation: 0,
                seq,
            })
        }
    }

    #[test]
    fn out_of_order_messages_wait_and_are_released_in_order() {
        let mut h = Harness::new(8, 100, 10);
        assert_eq!(h.accept(0, 1, 0), vec![0]);
        assert_eq!(h.accept(1, 1, 2), Vec::<u64>::new());
        assert_eq!(h.accept(2, 1, 3), Vec::<u64>::new());
        assert_eq!(h.status(1, 2), Status::Known, "buffered counts as seen");
        assert_eq!(h.status(1, 1), Status::New);
        assert_eq!(h.accept(3, 1, 1), vec![1, 2, 3]);
        assert_eq!(h.streams.buffered_bytes(), 0);
        assert_eq!(h.status(1, 3), Status::Known);
        assert!(h.skips().is_empty());
    }

    #[test]
    fn a_stream_first_heard_mid_way_waits_for_its_window_then_starts_silently() {
        let mut h = Harness::new(4, 100, 10);
        assert!(h.accept(0, 1, 10).is_empty(), "10 waits for 6..=9");
        assert_eq!(h.status(1, 5), Status::Known, "below the window");
        assert_eq!(h.accept(5, 1, 8), Vec::<u64>::new());
        assert_eq!(h.fire(100, 1), vec![8, 10]);
        // Seqs before the first heard one (here 6, 7 and 9) were never
        // this node's to miss: not reported.
        assert!(h.skips().is_empty());
        assert_eq!(h.stats.gap_skipped, 0);
        // Later gaps are.
        h.accept(200, 1, 12);
        assert_eq!(h.fire(300, 1), vec![12]);
        assert_eq!(h.skips(), vec![(11, 1, SkipReason::Timeout)]);
        assert_eq!(
            h.status(1, 9),
            Status::Known,
            "a skipped seq arriving late is a duplicate"
        );
    }

    #[test]
    fn only_messages_that_waited_gap_timeout_force_a_skip() {
        let mut h = Harness::new(8, 100, 10);
        h.accept(0, 1, 0);
        h.accept(0, 1, 2);
        h.accept(50, 1, 4);
        h.out.clear();
        assert!(h.fire(99, 1).is_empty(), "not due yet");
        assert_eq!(h.fire(100, 1), vec![2]);
        assert_eq!(h.skips().len(), 1);
        // 4 arrived at 50: a new timer is due at 150.
        h.accept(100, 1, 7);
        let timers: Vec<_> = h
            .out
            .iter()
            .filter(|o| matches!(o, Output::SetTimer { .. }))
            .collect();
        assert!(timers.is_empty(), "one timer pending at a time");
        assert_eq!(h.fire(150, 1), vec![4]);
        assert_eq!(h.fire(200, 1), vec![7]);
        assert_eq!(h.streams.buffered_messages(), 0);
    }

    #[test]
    fn a_full_origin_buffer_skips_its_oldest_gap() {
        let mut h = Harness::new(2, 100, 10);
        h.accept(0, 1, 0);
        h.accept(0, 1, 2);
        h.accept(0, 1, 4);
        assert_eq!(h.accept(0, 1, 6), vec![2]);
        assert!(h.skips().contains(&(1, 1, SkipReason::BufferFull)));
        assert_eq!(h.streams.buffered_messages(), 2);
    }

    #[test]
    fn the_byte_budget_flushes_the_fullest_origin() {
        let mut h = Harness::new(100, 10, 10);
        h.accept(0, 1, 0);
        h.accept(0, 2, 0);
        h.accept_sized(0, 1, 2, 4);
        h.accept_sized(0, 2, 2, 3);
        assert_eq!(
            h.accept_sized(0, 1, 4, 4),
            vec![2, 4],
            "origin 1 held 8 bytes"
        );
        assert_eq!(h.streams.buffered_bytes(), 3);
    }

    #[test]
    fn too_many_origins_forget_the_least_recently_active() {
        let mut h = Harness::new(4, 100, 8);
        for origin in 0..8 {
            h.accept(u64::from(origin), origin, 0);
        }
        h.accept(100, 0, 1);
        h.accept(100, 99, 0);
        assert_eq!(h.streams.len(), 8);
        assert_eq!(h.stats.streams_evicted, 1);
        assert_eq!(h.status(1, 0), Status::New, "origin 1 was the least recent");
        assert_eq!(h.status(0, 1), Status::Known);
    }

    #[test]
    fn the_last_sequence_number_is_refused() {
        let mut h = Harness::new(4, 100, 8);
        assert!(h.accept(0, 1, u64::MAX).is_empty());
        assert_eq!(
            h.accept(0, 1, u64::MAX - 1),
            Vec::<u64>::new(),
            "waits for its window"
        );
        assert_eq!(h.fire(100, 1), vec![u64::MAX - 1]);
        assert_eq!(h.status(1, u64::MAX - 1), Status::Known);
    }
}
