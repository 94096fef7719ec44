//! Protocol parameters and the one table that declares them.
//!
//! [`KEYS`] is the schema every other layer derives from: the NIF decodes the
//! Elixir config map by iterating it (and returns it to Elixir as
//! `HyParView.Native.schema/0`), `Config::default()` is built from it, and
//! `Config::validate` checks its ranges. Adding a key = a field on [`Config`]
//! plus one line in [`KEYS`]. The transport's keys live in the same shape in
//! `hyparview_transport::TRANSPORT_KEYS`.

use crate::Millis;
use std::fmt;

/// Protocol parameters. Defaults are the paper's (active 5, passive 30,
/// ARWL 6, PRWL 3, ka 3, kp 4) plus timing knobs the paper leaves open. The
/// meaning of each field is stated once, in [`KEYS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub active_view_size: usize,
    pub passive_view_size: usize,
    pub arwl: u32,
    pub prwl: u32,
    pub shuffle_active_count: usize,
    pub shuffle_passive_count: usize,
    pub shuffle_interval: Millis,
    pub shuffle_ttl: u32,
    pub neighbor_timeout: Millis,
    pub rejoin_backoff_min: Millis,
    pub rejoin_backoff_max: Millis,
    pub promotion_interval: Millis,
}

/// What a key's integer counts (for documentation and the Elixir side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Millis,
    Bytes,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Millis => "ms",
            Unit::Bytes => "bytes",
        }
    }
}

/// One configuration key of a config struct `C`: name, default, inclusive
/// range, unit, meaning, and how to read and write it. Every value is an
/// unsigned integer; `max` never exceeds what the field's type holds, so
/// `set` never truncates a value that passed [`Key::check`].
pub struct Key<C: 'static> {
    pub name: &'static str,
    pub default: u64,
    pub min: u64,
    pub max: u64,
    pub unit: Unit,
    pub meaning: &'static str,
    pub get: fn(&C) -> u64,
    pub set: fn(&mut C, u64),
}

impl<C> Key<C> {
    /// `Ok` when `value` is within the key's range.
    pub fn check(&self, value: u64) -> Result<(), ConfigError> {
        if value < self.min || value > self.max {
            return Err(ConfigError {
                key: self.name,
                reason: format!("must be an integer in {}..{}", self.min, self.max),
            });
        }
        Ok(())
    }

    /// Range-checks `value`, then stores it.
    pub fn assign(&self, config: &mut C, value: u64) -> Result<(), ConfigError> {
        self.check(value)?;
        (self.set)(config, value);
        Ok(())
    }
}

/// Finds a key of `table` by name.
pub fn find<'t, C>(table: &'t [Key<C>], name: &str) -> Option<&'t Key<C>> {
    table.iter().find(|k| k.name == name)
}

/// Checks every key of `table` against its range; the first violation is returned.
pub fn check_ranges<C>(table: &[Key<C>], config: &C) -> Result<(), ConfigError> {
    table.iter().try_for_each(|k| k.check((k.get)(config)))
}

const U32: u64 = u32::MAX as u64;
/// Times are capped at a day: longer is a typo, and it keeps `now + t` far
/// from overflow.
const DAY: u64 = 86_400_000;

/// The protocol keys. Cross-key rules are in [`Config::validate`].
#[rustfmt::skip]
pub const KEYS: &[Key<Config>] = &[
    Key { name: "active_view_size", default: 5, min: 1, max: 1024, unit: Unit::Count,
          meaning: "maximum size of the active view (peers with an open, monitored link)",
          get: |c| c.active_view_size as u64, set: |c, v| c.active_view_size = v as usize },
    Key { name: "passive_view_size", default: 30, min: 0, max: 65_536, unit: Unit::Count,
          meaning: "maximum size of the passive view (backup candidates, not connected)",
          get: |c| c.passive_view_size as u64, set: |c, v| c.passive_view_size = v as usize },
    Key { name: "arwl", default: 6, min: 1, max: 255, unit: Unit::Count,
          meaning: "Active Random Walk Length: the TTL a FORWARDJOIN starts with",
          get: |c| c.arwl as u64, set: |c, v| c.arwl = v as u32 },
    Key { name: "prwl", default: 3, min: 0, max: 255, unit: Unit::Count,
          meaning: "Passive Random Walk Length: the TTL at which a FORWARDJOIN also lands in the passive view",
          get: |c| c.prwl as u64, set: |c, v| c.prwl = v as u32 },
    Key { name: "shuffle_active_count", default: 3, min: 0, max: 1024, unit: Unit::Count,
          meaning: "ka: active-view peers included in a SHUFFLE",
          get: |c| c.shuffle_active_count as u64, set: |c, v| c.shuffle_active_count = v as usize },
    Key { name: "shuffle_passive_count", default: 4, min: 0, max: 65_536, unit: Unit::Count,
          meaning: "kp: passive-view peers included in a SHUFFLE",
          get: |c| c.shuffle_passive_count as u64, set: |c, v| c.shuffle_passive_count = v as usize },
    Key { name: "shuffle_interval", default: 10_000, min: 1, max: DAY, unit: Unit::Millis,
          meaning: "period between SHUFFLEs started by this node",
          get: |c| c.shuffle_interval, set: |c, v| c.shuffle_interval = v },
    Key { name: "shuffle_ttl", default: 6, min: 1, max: 255, unit: Unit::Count,
          meaning: "TTL of the SHUFFLE random walk",
          get: |c| c.shuffle_ttl as u64, set: |c, v| c.shuffle_ttl = v as u32 },
    Key { name: "neighbor_timeout", default: 2_000, min: 1, max: DAY, unit: Unit::Millis,
          meaning: "wait for a NEIGHBOR (or JOIN) reply before trying another candidate; \
                    should exceed connect + handshake + one round trip",
          get: |c| c.neighbor_timeout, set: |c, v| c.neighbor_timeout = v },
    Key { name: "rejoin_backoff_min", default: 500, min: 1, max: DAY, unit: Unit::Millis,
          meaning: "first delay before re-joining through the contacts when isolated; doubles (with jitter) per attempt",
          get: |c| c.rejoin_backoff_min, set: |c, v| c.rejoin_backoff_min = v },
    Key { name: "rejoin_backoff_max", default: 30_000, min: 1, max: DAY, unit: Unit::Millis,
          meaning: "cap of the rejoin backoff",
          get: |c| c.rejoin_backoff_max, set: |c, v| c.rejoin_backoff_max = v },
    Key { name: "promotion_interval", default: 30_000, min: 1, max: DAY, unit: Unit::Millis,
          meaning: "period of the low-rate passive-peer promotion that lets healed partitions merge \
                    when every active view is full (larger = less churn, slower merging)",
          get: |c| c.promotion_interval, set: |c, v| c.promotion_interval = v },
];

// Every `max` above must fit the field it is stored in (`set` uses `as`).
const _: () = {
    let mut i = 0;
    while i < KEYS.len() {
        assert!(
            KEYS[i].max <= U32 && KEYS[i].min <= KEYS[i].default && KEYS[i].default <= KEYS[i].max
        );
        i += 1;
    }
};

impl Default for Config {
    fn default() -> Self {
        // Zeroes are placeholders: every field is overwritten from KEYS (a
        // unit test checks that each field has a row).
        let mut c = Config {
            active_view_size: 0,
            passive_view_size: 0,
            arwl: 0,
            prwl: 0,
            shuffle_active_count: 0,
            shuffle_passive_count: 0,
            shuffle_interval: 0,
            shuffle_ttl: 0,
            neighbor_timeout: 0,
            rejoin_backoff_min: 0,
            rejoin_backoff_max: 0,
            promotion_interval: 0,
        };
        for k in KEYS {
            (k.set)(&mut c, k.default);
        }
        c
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

/// `Err` naming `key` unless `ok`.
pub fn rule(ok: bool, key: &'static str, reason: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            key,
            reason: reason.to_string(),
        })
    }
}

impl Config {
    /// Checks every key's range, then the cross-key rules; the first
    /// violation is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_ranges(KEYS, self)?;
        rule(self.prwl <= self.arwl, "prwl", "must not exceed arwl")?;
        rule(
            self.shuffle_active_count <= self.active_view_size,
            "shuffle_active_count",
            "must not exceed active_view_size",
        )?;
        rule(
            self.shuffle_passive_count <= self.passive_view_size,
            "shuffle_passive_count",
            "must not exceed passive_view_size",
        )?;
        rule(
            self.rejoin_backoff_max >= self.rejoin_backoff_min,
            "rejoin_backoff_max",
            "must be at least rejoin_backoff_min",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_one_row() {
        // Debug prints `name: value` per field; each field needs a row in KEYS.
        let fields = format!("{:?}", Config::default()).matches(": ").count();
        assert_eq!(fields, KEYS.len());
        let mut names: Vec<_> = KEYS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KEYS.len(), "duplicate key names");
    }

    #[test]
    fn defaults_come_from_the_table_and_are_valid() {
        let c = Config::default();
        for k in KEYS {
            assert_eq!((k.get)(&c), k.default, "{}", k.name);
        }
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            (c.active_view_size, c.passive_view_size, c.arwl, c.prwl),
            (5, 30, 6, 3)
        );
    }

    #[test]
    fn set_then_get_round_trips_at_the_bounds() {
        for k in KEYS {
            for v in [k.min, k.max] {
                let mut c = Config::default();
                k.assign(&mut c, v).unwrap();
                assert_eq!((k.get)(&c), v, "{}", k.name);
            }
        }
    }

    #[test]
    fn out_of_range_names_the_key() {
        let c = Config {
            active_view_size: 0,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "active_view_size");
        let k = find(KEYS, "shuffle_ttl").unwrap();
        assert_eq!(
            k.assign(&mut Config::default(), 256).unwrap_err().key,
            "shuffle_ttl"
        );
        let c = Config {
            arwl: 2,
            prwl: 3,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "prwl");
        let c = Config {
            rejoin_backoff_min: 10,
            rejoin_backoff_max: 5,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "rejoin_backoff_max");
    }
}
