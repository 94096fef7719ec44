//! Command-line parameters of a run.

use super::Scenario;
use hyparview::{Config, Millis};

#[derive(Clone, Debug)]
pub struct Params {
    pub scenario: Scenario,
    pub nodes: usize,
    pub seed: u64,
    pub fail: f64,
    pub rounds: usize,
    pub churn: f64,
    pub json: bool,
    pub latency_min: Millis,
    pub latency_max: Millis,
    pub shuffle_interval: Millis,
    pub neighbor_timeout: Millis,
    /// Virtual time between two joins while building the overlay.
    pub join_spacing: Millis,
    /// Rounds of quiet after the last join before the measured phase.
    pub settle_rounds: usize,
    /// Broadcasts averaged per reliability sample.
    pub broadcasts: usize,
    /// rollout (and `--rollout`): every node joins within this many ms.
    pub spread: Millis,
    /// failure, churn: build as a rollout (see `rollout.rs`).
    pub rollout: bool,
    /// Diagnosis only (no flag): trace every event between two nodes.
    pub trace_pair: Option<(u32, u32)>,
    /// `--contacts K`: in a rollout (`rollout`, `--rollout`) the K fixed
    /// contacts every node joins through (default 2); otherwise the contacts
    /// each node starts with, random nodes that joined before it (default 1).
    /// 0 until parsed: `parse_args` fills in the scenario's default.
    pub contacts: usize,
    /// Nodes ask a discovery service for live contacts (`discovery.rs`).
    pub discovery: bool,
    pub discovery_interval: Millis,
    pub discovery_refresh: Millis,
}

impl Params {
    pub fn new(scenario: Scenario) -> Params {
        Params {
            scenario,
            nodes: 1000,
            seed: 1,
            fail: 0.5,
            rounds: 10,
            churn: 0.05,
            json: false,
            latency_min: 5,
            latency_max: 50,
            shuffle_interval: Config::default().shuffle_interval,
            neighbor_timeout: Config::default().neighbor_timeout,
            join_spacing: 10,
            settle_rounds: 2,
            broadcasts: 50,
            spread: 200,
            rollout: false,
            trace_pair: None,
            contacts: 0,
            discovery: false,
            discovery_interval: 5_000,
            discovery_refresh: 60_000,
        }
    }
}

pub const USAGE: &str =
    "usage: hyparview-sim <stable|failure|churn|partition|rollout> [--nodes N] [--seed S] \
[--fail F] [--rounds R] [--churn C] [--json] [--latency-min MS] [--latency-max MS] \
[--shuffle-interval MS] [--neighbor-timeout MS] [--join-spacing MS] [--settle-rounds R] [--broadcasts B] \
[--contacts K] [--discovery] [--discovery-interval MS] [--discovery-refresh MS] [--spread MS] [--rollout]";

/// Parses the command line (without the program name).
pub fn parse_args<S: AsRef<str>>(args: &[S]) -> Result<Params, String> {
    let mut it = args.iter().map(|s| s.as_ref());
    let first = it.next().ok_or("missing scenario")?;
    let scenario = Scenario::parse(first).ok_or_else(|| format!("unknown scenario {first:?}"))?;
    let mut p = Params::new(scenario);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            p.json = true;
            continue;
        }
        if flag == "--discovery" {
            p.discovery = true;
            continue;
        }
        if flag == "--rollout" {
            p.rollout = true;
            continue;
        }
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
            v.parse().map_err(|_| format!("{flag}: cannot parse {v:?}"))
        }
        match flag {
            "--nodes" => p.nodes = num(flag, value()?)?,
            "--seed" => p.seed = num(flag, value()?)?,
            "--fail" => p.fail = num(flag, value()?)?,
            "--rounds" => p.rounds = num(flag, value()?)?,
            "--churn" => p.churn = num(flag, value()?)?,
            "--latency-min" => p.latency_min = num(flag, value()?)?,
            "--latency-max" => p.latency_max = num(flag, value()?)?,
            "--shuffle-interval" => p.shuffle_interval = num(flag, value()?)?,
            "--neighbor-timeout" => p.neighbor_timeout = num(flag, value()?)?,
            "--join-spacing" => p.join_spacing = num(flag, value()?)?,
            "--settle-rounds" => p.settle_rounds = num(flag, value()?)?,
            "--broadcasts" => p.broadcasts = num(flag, value()?)?,
            "--contacts" => {
                p.contacts = num(flag, value()?)?;
                if p.contacts == 0 {
                    return Err("--contacts must be at least 1".into());
                }
            }
            "--discovery-interval" => p.discovery_interval = num(flag, value()?)?,
            "--discovery-refresh" => p.discovery_refresh = num(flag, value()?)?,
            "--spread" => p.spread = num(flag, value()?)?,
            _ => return Err(format!("unknown option {flag:?}")),
        }
    }
    if p.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    if !(0.0..=1.0).contains(&p.fail) || !(0.0..=1.0).contains(&p.churn) {
        return Err("--fail and --churn must be within 0..1".into());
    }
    if p.latency_min > p.latency_max {
        return Err("--latency-min must not exceed --latency-max".into());
    }
    if p.contacts == 0 {
        p.contacts = if p.rollout || matches!(p.scenario, Scenario::Rollout) {
            2
        } else {
            1
        };
    }
    if p.rollout && !matches!(p.scenario, Scenario::Failure | Scenario::Churn) {
        return Err("--rollout applies to failure and churn".into());
    }
    if p.broadcasts == 0 {
        return Err("--broadcasts must be positive".into());
    }
    if p.contacts == 0 {
        return Err("--contacts must be at least 1".into());
    }
    if p.discovery_interval == 0 || p.discovery_refresh < p.discovery_interval {
        return Err("--discovery-interval must be positive and at most --discovery-refresh".into());
    }
    let cfg = Config {
        shuffle_interval: p.shuffle_interval,
        neighbor_timeout: p.neighbor_timeout,
        ..Config::default()
    };
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(p)
}
