//! Plumtree parameters. The paper leaves timeouts and the lazy-push policy
//! open ("should be configured considering the diameter of the overlay and
//! a target maximum recovery latency", §4.3); the bounds on memory are ours.

use crate::{Millis, Round};
use std::fmt;

/// Upper bound on the ids looked at in one incoming IHAVE or GRAFT; the rest
/// are ignored (and counted). Also the largest allowed `max_ihave_batch`.
pub const MAX_IDS_PER_MESSAGE: usize = 4096;

/// Protocol parameters; `Config::default()` is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Lazy push is batched: announcements for a lazy peer wait at most this
    /// long before one IHAVE carries them all.
    pub ihave_interval: Millis,
    /// Most announcements in one IHAVE; a full batch is sent at once.
    pub max_ihave_batch: usize,
    /// The paper's `timeout`: how long an announced (IHAVE) message may stay
    /// missing before it is requested with a GRAFT (plus up to 50 % random
    /// jitter). Must exceed the slowest path through the tree, well beyond
    /// the announce path: a graft on a tree that was merely slow adds a
    /// redundant link, and under concurrent broadcasts the pruning that
    /// follows can cut the tree elsewhere. In the crate's tests (100 nodes,
    /// 1-5 ms links, 50 broadcasts/s from random origins) 500 ms kept the
    /// tree churning (RMR ≈ 0.05) while 1 s converged to RMR 0.
    pub graft_timeout_1: Millis,
    /// The paper's `timeout2`: after a GRAFT, how long to wait before
    /// grafting the next announcer ("in the order of an average round trip
    /// time to a neighbor").
    pub graft_timeout_2: Millis,
    /// Tree optimisation (§4.4): a lazy link announcing a message at least
    /// this many rounds earlier than the eager link delivered it replaces
    /// the eager link, in that origin's own tree only (see `tree.rs`), and
    /// only for origins whose messages come at most 5 s apart. `None` (the
    /// default) leaves every origin on the shared tree, whose last delivery
    /// hop is several times the shortest paths. Measured in
    /// `scale_tests.rs` (1,000 and 10,000 nodes, 10 or 100 origins, 50
    /// broadcasts/s), 2 brings the mean last delivery hop to about 2 × the
    /// average shortest path with RMR ≤ 0.01, and settles to RMR 0 after
    /// failures (1 is a little shorter but settles slower, 3 and more leave
    /// paths longer). Not the default because with every node an origin
    /// sending every 20 s or so (1,000 origins on 1,000 nodes) it does
    /// worse than the shared tree alone: RMR 0.06 against 0, longer paths,
    /// and slower repair after failures (trees made for one message go
    /// stale). Enable it when a few origins send most of the traffic.
    pub optimization_threshold: Option<Round>,
    /// A new neighbour is sent one IHAVE listing every cached message this
    /// node received (or broadcast) at most this long ago, so that a node
    /// that changed links (after failures, or a link swapped by the
    /// membership) catches up on what its old links did not bring: whoever
    /// misses one grafts it like any announced message. 0 announces nothing.
    /// Must cover how long the membership takes to replace failed links
    /// (failure detection plus a join); cached messages only. A node that
    /// has just joined is told too, so it may deliver messages broadcast up
    /// to this long before it joined.
    pub catch_up_window: Millis,
    /// Recent payloads kept to answer GRAFTs: at most this many ...
    pub cache_max_messages: usize,
    /// ... of at most this many payload bytes in total ...
    pub cache_max_bytes: usize,
    /// ... each kept at most this long.
    pub cache_max_age: Millis,
    /// A message waiting for an earlier one from the same origin is
    /// delivered at most this long after it arrived: the gap before it is
    /// then skipped (and reported). Must exceed `graft_timeout_1` plus its
    /// jitter (so 1.5 × `graft_timeout_1`), so that a lost message can be
    /// grafted before its gap is skipped.
    pub gap_timeout: Millis,
    /// Largest payload accepted from the application or from a peer.
    pub max_broadcast_size: usize,
    /// Most out-of-order messages held per origin; one more skips the
    /// oldest gap of that origin.
    pub max_buffered_per_origin: usize,
    /// Most payload bytes held out of order over all origins; beyond it the
    /// origin holding most is flushed (its gaps skipped).
    pub max_buffered_bytes: usize,
    /// Most origins whose stream position is remembered; beyond it the
    /// least recently active ones are forgotten (see `Streams`).
    pub max_origins: usize,
    /// Most announced-but-missing message ids tracked for grafting.
    pub max_missing: usize,
    /// Most origins with an eager/lazy tree of their own (see `tree.rs`);
    /// beyond it the least recently used one goes back to the shared tree.
    /// Each costs one entry per neighbour.
    pub max_trees: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ihave_interval: 50,
            max_ihave_batch: 1024,
            graft_timeout_1: 1_000,
            graft_timeout_2: 250,
            optimization_threshold: None,
            catch_up_window: 5_000,
            cache_max_messages: 4096,
            cache_max_bytes: 64 << 20,
            cache_max_age: 30_000,
            gap_timeout: 3_000,
            max_broadcast_size: 1 << 20,
            max_buffered_per_origin: 256,
            max_buffered_bytes: 64 << 20,
            max_origins: 65_536,
            max_missing: 16_384,
            max_trees: 1024,
        }
    }
}

/// Invalid configuration: names the offending key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: &'static str,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

impl Config {
    /// Checks every field; the first violation is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive: [(&'static str, u64); 5] = [
            ("ihave_interval", self.ihave_interval),
            ("graft_timeout_1", self.graft_timeout_1),
            ("graft_timeout_2", self.graft_timeout_2),
            ("cache_max_age", self.cache_max_age),
            ("gap_timeout", self.gap_timeout),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(err(key, "must be positive"));
            }
        }
        if self.max_ihave_batch == 0 || self.max_ihave_batch > MAX_IDS_PER_MESSAGE {
            return Err(err(
                "max_ihave_batch",
                format!("must be between 1 and {MAX_IDS_PER_MESSAGE}"),
            ));
        }
        if self.optimization_threshold == Some(0) {
            return Err(err("optimization_threshold", "must be positive"));
        }
        if self.gap_timeout
            <= self
                .graft_timeout_1
                .saturating_add(self.graft_timeout_1 / 2)
        {
            return Err(err("gap_timeout", "must exceed 1.5 × graft_timeout_1"));
        }
        if self.max_broadcast_size == 0 {
            return Err(err("max_broadcast_size", "must be positive"));
        }
        if self.cache_max_messages == 0 {
            return Err(err("cache_max_messages", "must be positive"));
        }
        if self.cache_max_bytes < self.max_broadcast_size {
            return Err(err(
                "cache_max_bytes",
                "must be at least max_broadcast_size",
            ));
        }
        if self.max_buffered_per_origin == 0 {
            return Err(err("max_buffered_per_origin", "must be positive"));
        }
        if self.max_buffered_bytes < self.max_broadcast_size {
            return Err(err(
                "max_buffered_bytes",
                "must be at least max_broadcast_size",
            ));
        }
        if self.max_origins == 0 {
            return Err(err("max_origins", "must be positive"));
        }
        if self.max_missing == 0 {
            return Err(err("max_missing", "must be positive"));
        }
        if self.max_trees == 0 {
            return Err(err("max_trees", "must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
        assert_eq!(Config::default().max_broadcast_size, 1 << 20);
    }

    #[test]
    fn each_violation_names_its_key() {
        type Breaker = fn(&mut Config);
        let cases: Vec<(&str, Breaker)> = vec![
            ("ihave_interval", |c| c.ihave_interval = 0),
            ("graft_timeout_1", |c| c.graft_timeout_1 = 0),
            ("graft_timeout_2", |c| c.graft_timeout_2 = 0),
            ("cache_max_age", |c| c.cache_max_age = 0),
            ("gap_timeout", |c| c.gap_timeout = 0),
            ("gap_timeout", |c| c.gap_timeout = c.graft_timeout_1 * 3 / 2),
            ("max_ihave_batch", |c| c.max_ihave_batch = 0),
            ("max_ihave_batch", |c| {
                c.max_ihave_batch = MAX_IDS_PER_MESSAGE + 1
            }),
            ("optimization_threshold", |c| {
                c.optimization_threshold = Some(0)
            }),
            ("max_broadcast_size", |c| c.max_broadcast_size = 0),
            ("cache_max_messages", |c| c.cache_max_messages = 0),
            ("cache_max_bytes", |c| {
                c.cache_max_bytes = c.max_broadcast_size - 1
            }),
            ("max_buffered_per_origin", |c| c.max_buffered_per_origin = 0),
            ("max_buffered_bytes", |c| c.max_buffered_bytes = 1),
            ("max_origins", |c| c.max_origins = 0),
            ("max_missing", |c| c.max_missing = 0),
            ("max_trees", |c| c.max_trees = 0),
        ];
        for (key, break_it) in cases {
            let mut config = Config::default();
            break_it(&mut config);
            let error = config.validate().unwrap_err();
            assert_eq!(error.key, key, "{error}");
            assert!(error.to_string().contains(key));
        }
    }
}
