use crate::Millis;
use std::fmt;

/// Protocol parameters. Defaults are the paper's (active 5, passive 30,
/// ARWL 6, PRWL 3, ka 3, kp 4) plus timing knobs the paper leaves open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Maximum size of the active view (links kept open and monitored).
    pub active_view_size: usize,
    /// Maximum size of the passive view (backup candidates, not connected).
    pub passive_view_size: usize,
    /// Active Random Walk Length: TTL a FORWARDJOIN starts with.
    pub arwl: u32,
    /// Passive Random Walk Length: TTL at which a FORWARDJOIN also lands in
    /// the passive view.
    pub prwl: u32,
    /// ka: active-view peers included in a SHUFFLE.
    pub shuffle_active_count: usize,
    /// kp: passive-view peers included in a SHUFFLE.
    pub shuffle_passive_count: usize,
    /// Period between SHUFFLEs started by this node.
    pub shuffle_interval: Millis,
    /// TTL of the SHUFFLE random walk.
    pub shuffle_ttl: u32,
    /// How long to wait for a NEIGHBOR (or JOIN) reply before trying another
    /// candidate. Should exceed connect + handshake + one round trip, or
    /// requests to live peers time out and links churn on slow networks.
    pub neighbor_timeout: Millis,
    /// First delay before re-joining through the contacts when isolated;
    /// doubles (with jitter) on every attempt up to `rejoin_backoff_max`.
    pub rejoin_backoff_min: Millis,
    pub rejoin_backoff_max: Millis,
    /// Period of the low-rate passive-peer promotion that lets healed
    /// partitions merge even when every active view is full: on each tick a
    /// node may send a `merge` NEIGHBOR to a peer that failed earlier, or
    /// (rarely, 1 tick in 32 when full) to a random passive peer. Larger
    /// values mean less churn and slower merging.
    pub promotion_interval: Millis,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            active_view_size: 5,
            passive_view_size: 30,
            arwl: 6,
            prwl: 3,
            shuffle_active_count: 3,
            shuffle_passive_count: 4,
            shuffle_interval: 10_000,
            shuffle_ttl: 6,
            neighbor_timeout: 2_000,
            rejoin_backoff_min: 500,
            rejoin_backoff_max: 30_000,
            promotion_interval: 30_000,
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
        if self.active_view_size == 0 || self.active_view_size > 1024 {
            return Err(err("active_view_size", "must be between 1 and 1024"));
        }
        if self.passive_view_size > 65_536 {
            return Err(err("passive_view_size", "must be at most 65536"));
        }
        if self.arwl == 0 || self.arwl > 255 {
            return Err(err("arwl", "must be between 1 and 255"));
        }
        if self.prwl > self.arwl {
            return Err(err("prwl", "must not exceed arwl"));
        }
        if self.shuffle_active_count > self.active_view_size {
            return Err(err(
                "shuffle_active_count",
                "must not exceed active_view_size",
            ));
        }
        if self.shuffle_passive_count > self.passive_view_size {
            return Err(err(
                "shuffle_passive_count",
                "must not exceed passive_view_size",
            ));
        }
        if self.shuffle_interval == 0 {
            return Err(err("shuffle_interval", "must be positive"));
        }
        if self.shuffle_ttl == 0 || self.shuffle_ttl > 255 {
            return Err(err("shuffle_ttl", "must be between 1 and 255"));
        }
        if self.neighbor_timeout == 0 {
            return Err(err("neighbor_timeout", "must be positive"));
        }
        if self.rejoin_backoff_min == 0 {
            return Err(err("rejoin_backoff_min", "must be positive"));
        }
        if self.rejoin_backoff_max < self.rejoin_backoff_min {
            return Err(err(
                "rejoin_backoff_max",
                "must be at least rejoin_backoff_min",
            ));
        }
        if self.promotion_interval == 0 {
            return Err(err("promotion_interval", "must be positive"));
        }
        Ok(())
    }
}
