//! Tags: 16 bits of a peer id's hash, kept apart from the ids so that a
//! small set is looked up by scanning one dense array of integers
//! ([`find_tag`]) and, before that, a filter of them ([`TagFilter`]) held
//! in the set itself. Used by the peer sets (`views.rs`) and the crossing
//! proofs (`proofs.rs`). A tag only narrows a lookup: a match is always
//! confirmed on the id.

/// A member's tag: 16 bits of its id hash. A set of 30 keeps its tags in
/// one cache line; a tag match is confirmed on the id (a pointer compare for
/// copies of one id), and two different ids share a tag once in 65,536.
pub(crate) type Tag = u16;

#[inline]
pub(crate) fn tag_of(hash: u64) -> Tag {
    (hash >> 48) as Tag
}

/// Index of the first `t` in `tags`, from `from` on. The scan tests four
/// tags per step in one 64-bit word, without branching on each: the
/// lanes equal to `t` become zero, and the classic zero-lane test flags
/// them (exact for the lowest flagged lane, the one returned). A scan of
/// 30 tags is eight steps.
#[inline]
pub(crate) fn find_tag(tags: &[Tag], t: Tag, from: usize) -> Option<usize> {
    const LANES: u64 = 0x0001_0001_0001_0001;
    const HIGH: u64 = 0x8000_8000_8000_8000;
    let tags = &tags[from..];
    let splat = u64::from(t) * LANES;
    let first_zero = |word: u64| {
        let x = word ^ splat;
        let z = x.wrapping_sub(LANES) & !x & HIGH;
        (z != 0).then(|| z.trailing_zeros() as usize / 16)
    };
    let word = |c: &[Tag]| c.iter().rev().fold(0u64, |w, &x| (w << 16) | u64::from(x));
    let mut chunks = tags.chunks_exact(4);
    for (n, c) in chunks.by_ref().enumerate() {
        if let Some(lane) = first_zero(word(c)) {
            return Some(from + 4 * n + lane);
        }
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return None;
    }
    // The missing lanes hold !t, which never matches. (Built lane by lane:
    // a copy into a padded array compiled to a call to memcpy, on every
    // scan of a set whose size is not a multiple of four.)
    let padded = (0..4).rev().fold(0u64, |w, k| {
        (w << 16) | u64::from(rest.get(k).copied().unwrap_or(!t))
    });
    let base = from + tags.len() - rest.len();
    first_zero(padded).map(|lane| base + lane)
}

/// Which tags a small set may hold: bit `tag % (64 W)` of every member's
/// tag, and perhaps of removed ones. It is rebuilt every `R` removals
/// rather than on each, so that a set that evicts for every arrival (a
/// full passive view taking gossip, the crossing proofs) does not rescan
/// its tags each time. `W` is a power of two.
#[derive(Clone, Debug)]
pub(crate) struct TagFilter<const W: usize = 4, const R: u8 = 8> {
    bits: [u64; W],
    /// Removals since the last rebuild.
    stale: u8,
}

impl<const W: usize, const R: u8> Default for TagFilter<W, R> {
    fn default() -> Self {
        TagFilter {
            bits: [0; W],
            stale: 0,
        }
    }
}

impl<const W: usize, const R: u8> TagFilter<W, R> {
    /// The word and bit of `t`.
    #[inline]
    fn bit(t: Tag) -> (usize, u64) {
        (usize::from(t >> 6) & (W - 1), 1 << (t & 63))
    }

    /// True when a member may have tag `t` (false: none has).
    #[inline]
    pub(crate) fn may_hold(&self, t: Tag) -> bool {
        let (w, b) = Self::bit(t);
        self.bits[w] & b != 0
    }

    pub(crate) fn insert(&mut self, t: Tag) {
        let (w, b) = Self::bit(t);
        self.bits[w] |= b;
    }

    /// A member left; `tags` are those that remain.
    pub(crate) fn removed<'a>(&mut self, tags: impl ExactSizeIterator<Item = &'a Tag>) {
        self.stale += 1;
        if self.stale >= R || tags.len() == 0 {
            self.stale = 0;
            self.bits = [0; W];
            for &t in tags {
                self.insert(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn tag_scans_find_the_first_match_at_any_offset() {
        let mut rng = SmallRng::seed_from_u64(3);
        for len in 0..40 {
            // Few distinct tags (and 0 and 0xFFFF), so matches repeat.
            let tags: Vec<Tag> = (0..len)
                .map(|_| [0, 1, 2, 0x8000, 0xFFFF][rng.gen_range(0..5)])
                .collect();
            for from in 0..=len {
                for t in [0, 1, 2, 3, 0x8000, 0xFFFF] {
                    let want = tags[from..].iter().position(|&x| x == t).map(|i| from + i);
                    assert_eq!(find_tag(&tags, t, from), want, "{tags:?} {t} {from}");
                }
            }
        }
    }

    #[test]
    fn the_filter_forgets_removed_tags_at_its_rebuild_and_keeps_the_rest() {
        // `a` and `b` share a bit; `c` has its own.
        let (a, b, c): (Tag, Tag, Tag) = (1, 1 + 256, 2);
        assert_eq!(TagFilter::<4>::bit(a), TagFilter::<4>::bit(b));
        let mut f: TagFilter<4, 3> = TagFilter::default();
        let mut tags = vec![a, b, c];
        for &t in &tags {
            f.insert(t);
        }
        assert!(!f.may_hold(3));
        tags.retain(|&t| t != a);
        f.removed(tags.iter());
        assert!(f.may_hold(b), "b keeps the bit it shares with a");
        tags.retain(|&t| t != c);
        f.removed(tags.iter());
        assert!(f.may_hold(c), "until the rebuild");
        tags.push(4);
        f.insert(4);
        tags.retain(|&t| t != 4);
        f.removed(tags.iter());
        assert!(!f.may_hold(c) && !f.may_hold(4) && f.may_hold(b), "rebuilt");
        tags.clear();
        f.removed(tags.iter());
        assert_eq!(f.bits, [0; 4], "an empty set clears it");
    }
}
