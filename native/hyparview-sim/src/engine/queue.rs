//! The event queue: a timing wheel of 1 ms buckets plus a heap for far
//! events, popping in (time, push sequence) order. Each event carries a
//! small tag (where it lands) that the queue keeps in its predecessor's
//! link, so looking two events ahead is one read of a line the loop
//! fetched ahead of time.

use hyparview::Millis;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Far-future entry: (time, sequence, payload slot).
type EventKey = Reverse<(Millis, u64, u32)>;

/// Span of the timing wheel in ms; later events wait in a heap.
const WHEEL_MS: usize = 1 << 16;

/// How far ahead (ms) the prefetch hints look for the next events: the
/// last events of a millisecond would otherwise start cold.
const HINT_MS: Millis = 8;

/// End of a bucket's list.
const NIL: u32 = u32::MAX;

/// A bucket: a FIFO list threaded through `EventQueue::links`, and the
/// tag of its head.
#[derive(Clone, Copy)]
struct Bucket<T> {
    head: u32,
    tail: u32,
    head_tag: T,
}

/// `links[slot]`: the slot after `slot` in its bucket, and that slot's
/// tag. (While `slot` waits in the far heap, `tag` is its own.)
#[derive(Clone, Copy)]
struct Link<T> {
    next: u32,
    tag: T,
}

/// Event queue ordered by (time, push sequence): a timing wheel of 1 ms
/// buckets over [base, base + WHEEL_MS), each bucket in push order, plus a
/// heap for later events. Same order as a heap keyed by (time, sequence),
/// at a fraction of the cost (the heap pop was ~10 % of a run).
///
/// A bucket is a linked list through `links` (indexed by payload slot,
/// which is queued at most once at a time), not a vector per bucket:
/// vectors kept the capacity of their busiest millisecond forever, ~1.4 KB
/// per simulated node; the lists cost a link per slot and a fixed wheel.
///
/// Invariants: every heap entry has time >= base + WHEEL_MS, and nothing is
/// ever pushed before `base` (the engine pushes at >= now >= base). So when
/// `base` advances, entries leaving the heap reach their bucket before any
/// direct push can, and a bucket is always in sequence order.
pub(crate) struct EventQueue<T: Copy + Default> {
    wheel: Vec<Bucket<T>>,
    links: Vec<Link<T>>,
    base: Millis,
    far: BinaryHeap<EventKey>,
    seq: u64,
    pub(crate) len: usize,
}

impl<T: Copy + Default> EventQueue<T> {
    pub(crate) fn new() -> EventQueue<T> {
        let empty = Bucket {
            head: NIL,
            tail: NIL,
            head_tag: T::default(),
        };
        EventQueue {
            wheel: vec![empty; WHEEL_MS],
            links: Vec::new(),
            base: 0,
            far: BinaryHeap::new(),
            seq: 0,
            len: 0,
        }
    }

    fn bucket(t: Millis) -> usize {
        (t % WHEEL_MS as Millis) as usize
    }

    /// `links[slot]`, grown to hold it.
    fn link_mut(&mut self, slot: u32) -> &mut Link<T> {
        let i = slot as usize;
        if i >= self.links.len() {
            let blank = Link {
                next: NIL,
                tag: T::default(),
            };
            self.links.resize(i + 1, blank);
        }
        &mut self.links[i]
    }

    /// Appends `slot` to the bucket of `time` (within the wheel's span).
    fn append(&mut self, time: Millis, slot: u32, tag: T) {
        self.link_mut(slot).next = NIL;
        let b = &mut self.wheel[Self::bucket(time)];
        if b.tail == NIL {
            b.head = slot;
            b.head_tag = tag;
        } else {
            self.links[b.tail as usize] = Link { next: slot, tag };
        }
        b.tail = slot;
    }

    pub(crate) fn push(&mut self, time: Millis, slot: u32, tag: T) {
        debug_assert!(time >= self.base, "event before the queue's base");
        debug_assert!(slot != NIL, "slot out of range");
        let time = time.max(self.base);
        self.seq += 1;
        self.len += 1;
        if time - self.base < WHEEL_MS as Millis {
            self.append(time, slot, tag);
        } else {
            self.link_mut(slot).tag = tag;
            self.far.push(Reverse((time, self.seq, slot)));
        }
    }

    /// The first slot of the first non-empty bucket among the `HINT_MS`
    /// from `d` ms past `base`, with its tag and its bucket's distance.
    fn first_from(&self, d: Millis) -> Option<(u32, T, Millis)> {
        (d..HINT_MS).find_map(|d| {
            let b = &self.wheel[Self::bucket(self.base + d)];
            (b.head != NIL).then_some((b.head, b.head_tag, d))
        })
    }

    /// The slot that pops next if it is due within `HINT_MS` (and nothing
    /// is pushed before it), with its tag and how many ms past the current
    /// one it is due: a hint for prefetching; None does not mean the queue
    /// is empty.
    pub(crate) fn peek(&self) -> Option<(u32, T, Millis)> {
        self.first_from(0)
    }

    /// The slot after queued `slot` (due `d` ms past the current one), in
    /// its bucket or the next ones within `HINT_MS`, with its tag (same
    /// hint).
    pub(crate) fn peek_after(&self, slot: u32, d: Millis) -> Option<(u32, T, Millis)> {
        let l = self.links.get(slot as usize)?;
        if l.next != NIL {
            return Some((l.next, l.tag, d));
        }
        self.first_from(d + 1)
    }

    /// Where the link of `slot` lives (for prefetching what `peek_after`
    /// will read).
    pub(crate) fn link_address(&self, slot: u32) -> *const u8 {
        self.links.as_ptr().wrapping_add(slot as usize).cast()
    }

    /// The next event at or before `t`, in order; never moves `base` past `t`.
    pub(crate) fn pop_until(&mut self, t: Millis) -> Option<(Millis, u32)> {
        loop {
            let b = Self::bucket(self.base);
            let slot = self.wheel[b].head;
            if slot != NIL {
                if self.base > t {
                    return None;
                }
                let Link { next, tag } = self.links[slot as usize];
                let bucket = &mut self.wheel[b];
                bucket.head = next;
                bucket.head_tag = tag;
                if next == NIL {
                    bucket.tail = NIL;
                }
                self.len -= 1;
                return Some((self.base, slot));
            }
            if self.base >= t || self.len == 0 {
                return None;
            }
            // Bucket drained: move on one ms, pulling in what now fits.
            self.base += 1;
            let horizon = self.base + WHEEL_MS as Millis;
            while let Some(&Reverse((time, _, slot))) = self.far.peek() {
                if time >= horizon {
                    break;
                }
                self.far.pop();
                let tag = self.links[slot as usize].tag;
                self.append(time, slot, tag);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// The wheel pops in exactly the order of a heap keyed by (time, push
    /// sequence), with pushes interleaved with pops, same-time pushes while
    /// a bucket drains, and events beyond the wheel's span.
    #[test]
    fn event_queue_matches_a_heap_ordered_by_time_then_sequence() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut q = EventQueue::new();
        let mut reference: BinaryHeap<Reverse<(Millis, u64, u32)>> = BinaryHeap::new();
        let (mut now, mut seq, mut popped) = (0, 0u64, 0);
        for round in 0..200u32 {
            for _ in 0..rng.gen_range(0..50) {
                let after = match rng.gen_range(0..10) {
                    0 => 0,
                    1 => rng.gen_range(WHEEL_MS as Millis..4 * WHEEL_MS as Millis),
                    _ => rng.gen_range(0..3_000),
                };
                seq += 1;
                let slot = seq as u32;
                q.push(now + after, slot, slot ^ 0x55);
                reference.push(Reverse((now + after, seq, slot)));
            }
            let t = now + rng.gen_range(0..if round % 50 == 0 { 200_000 } else { 2_000 });
            loop {
                let ahead = q.peek();
                let after = ahead.and_then(|(s, _, d)| q.peek_after(s, d));
                let Some((time, slot)) = q.pop_until(t) else {
                    break;
                };
                let Reverse((rt, _, rslot)) = reference.pop().expect("reference has it");
                assert_eq!((time, slot), (rt, rslot));
                // The hints name the next pops, each with its own tag.
                if let Some((s, tag, d)) = ahead {
                    assert_eq!((s, tag, now + d), (slot, slot ^ 0x55, time));
                }
                if let Some((s, tag, _)) = after {
                    assert_eq!(tag, s ^ 0x55);
                    assert_eq!(q.peek().map(|(p, _, _)| p), Some(s));
                }
                assert!(time <= t && time >= now);
                now = time;
                popped += 1;
                if rng.gen_ratio(1, 20) {
                    // A same-time push while this bucket drains goes last.
                    seq += 1;
                    q.push(now, seq as u32, seq as u32 ^ 0x55);
                    reference.push(Reverse((now, seq, seq as u32)));
                }
            }
            assert!(reference.peek().is_none_or(|Reverse((rt, _, _))| *rt > t));
            assert_eq!(q.len, reference.len());
            now = t;
        }
        assert!(popped > 1_000, "{popped}");
    }
}
