//! The discovery model (`--discovery`): a headless Service's DNS that lists
//! the live pods, asked by every node on the schedule of the Elixir
//! `HyParView.Discovery` (its `Schedule` module, ported here):
//!
//! - a node whose active view is empty (*isolated*) asks once per gap;
//! - a node whose active view has stayed below its size (*short*) for
//!   `interval` asks once per gap;
//! - every node asks every `refresh` in any case;
//! - the gap is `interval`, doubled for every run in a row (while short)
//!   that turned up no contact the previous run did not, capped at
//!   `refresh`; gaps and refreshes are jittered by ±25 %.
//!
//! An answer is up to `contacts` random live nodes other than the asker (a
//! DNS answer lists every ready pod; a node keeps a few), fed to the node as
//! `Input::Contacts`, which replaces its contact list.
//!
//! Each node learns whether it is short or isolated from its own state (its
//! active view, through the node's accessors), as the Elixir process learns
//! it from the node's peer events. The model looks every `TICK` of virtual
//! time, so a run is up to one tick late. It draws from its own RNG stream
//! and only acts from the scenario's event on: the build stands for a formed
//! cluster whose first discovery run gave each node its initial contacts
//! (`--contacts`). Without `--discovery` nothing here runs and the engine is
//! driven exactly as before.

use crate::engine::{mix64, Sim};
use crate::id::{Input, Peer};
use hyparview::Millis;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// How often the model looks at the nodes' views.
pub const TICK: Millis = 100;

#[derive(Clone, Copy, Debug)]
pub struct DiscoveryConfig {
    /// How soon a short or isolated node asks again (`discovery_interval`).
    pub interval: Millis,
    /// The steady rate and the cap of the backoff (`discovery_refresh`).
    pub refresh: Millis,
    /// Live nodes in one answer.
    pub contacts: usize,
}

/// One node's schedule (the Elixir `HyParView.Discovery.Schedule`).
#[derive(Clone, Debug)]
struct Schedule {
    last_run: Millis,
    /// Since when the active view has been short (None while full).
    short_since: Option<Millis>,
    isolated: bool,
    /// Runs in a row, while short, that found no new contact.
    misses: u32,
    gap: Millis,
    refresh_gap: Millis,
    /// The previous answer: "new" is relative to it.
    known: Vec<u32>,
}

/// `ms` ± 25 %.
fn jitter(ms: Millis, rng: &mut SmallRng) -> Millis {
    let u: f64 = rng.gen();
    (ms as f64 * (0.75 + 0.5 * u)).round() as Millis
}

impl Schedule {
    /// A node whose last run was at `last_run` with a full view.
    fn new(last_run: Millis, cfg: &DiscoveryConfig, rng: &mut SmallRng) -> Schedule {
        let mut s = Schedule {
            last_run,
            short_since: None,
            isolated: false,
            misses: 0,
            gap: 0,
            refresh_gap: 0,
            known: Vec::new(),
        };
        s.ran(last_run, true, cfg, rng);
        s
    }

    /// The active view has `active` of `size` peers.
    fn view(&mut self, active: usize, size: usize, now: Millis) {
        if active >= size {
            self.short_since = None;
            self.isolated = false;
            self.misses = 0;
        } else {
            self.short_since.get_or_insert(now);
            self.isolated = active == 0;
        }
    }

    /// A run finished at `now`; `learned` when it found a contact the
    /// previous one did not.
    fn ran(&mut self, now: Millis, learned: bool, cfg: &DiscoveryConfig, rng: &mut SmallRng) {
        // Backoff only counts runs made while short.
        self.misses = if learned || self.short_since.is_none() {
            0
        } else {
            (self.misses + 1).min(30)
        };
        let doubled = cfg.interval.saturating_mul(1 << self.misses.min(20));
        self.gap = jitter(cfg.refresh.min(doubled), rng);
        self.refresh_gap = jitter(cfg.refresh, rng);
        self.last_run = now;
    }

    fn due(&self, cfg: &DiscoveryConfig) -> Millis {
        let refresh = self.last_run + self.refresh_gap;
        let next = self.last_run + self.gap;
        match self.short_since {
            _ if self.isolated => refresh.min(next),
            Some(since) => refresh.min(next.max(since + cfg.interval)),
            None => refresh,
        }
    }
}

pub struct Discovery {
    cfg: DiscoveryConfig,
    /// By node index; None for a node not yet seen alive (or gone).
    schedules: Vec<Option<Schedule>>,
    rng: SmallRng,
    /// Answers handed out.
    pub runs: u64,
}

impl Discovery {
    /// Starts the model at `sim.now`: every live node is mid-way through its
    /// steady refresh (its last run at a random time within one refresh).
    pub fn new(sim: &Sim, seed: u64, cfg: DiscoveryConfig) -> Discovery {
        let mut rng = SmallRng::seed_from_u64(mix64(seed ^ 0xD15C_0000_D15C));
        let now = sim.now;
        let schedules = (0..sim.nodes.len() as u32)
            .map(|i| {
                sim.is_alive(i).then(|| {
                    let ago = rng.gen_range(0..cfg.refresh);
                    Schedule::new(now.saturating_sub(ago), &cfg, &mut rng)
                })
            })
            .collect();
        Discovery {
            cfg,
            schedules,
            rng,
            runs: 0,
        }
    }

    /// Runs `sim` until `t`, one tick at a time, answering the nodes whose
    /// run is due after each tick.
    pub fn run_until(&mut self, sim: &mut Sim, t: Millis) {
        while sim.now < t {
            let next = (sim.now + TICK).min(t);
            sim.run_until(next);
            self.tick(sim);
        }
    }

    fn tick(&mut self, sim: &mut Sim) {
        let now = sim.now;
        self.schedules.resize(sim.nodes.len(), None);
        // The DNS answer's pool, read once per tick that needs it.
        let mut live: Option<Vec<u32>> = None;
        for i in 0..sim.nodes.len() as u32 {
            let n = &sim.nodes[i as usize];
            let slot = &mut self.schedules[i as usize];
            if !n.alive {
                *slot = None;
                continue;
            }
            // A node started since the last tick: its contacts were its
            // first answer.
            let s = slot.get_or_insert_with(|| Schedule::new(now, &self.cfg, &mut self.rng));
            let size = n.node.config().active_view_size;
            s.view(n.node.active_view().len(), size, now);
            if s.due(&self.cfg) > now {
                continue;
            }
            let live = live.get_or_insert_with(|| sim.live_nodes());
            let answer = pick(live, i, self.cfg.contacts, &mut self.rng);
            let learned = answer.iter().any(|c| !s.known.contains(c));
            s.ran(now, learned, &self.cfg, &mut self.rng);
            s.known.clone_from(&answer);
            self.runs += 1;
            let peers: Vec<Peer> = answer
                .iter()
                .map(|&c| sim.nodes[c as usize].peer.clone())
                .collect();
            sim.nodes[i as usize].contacts = answer;
            sim.feed(i, Input::Contacts { contacts: peers });
        }
    }
}

/// Up to `k` distinct random nodes of `live` other than `me`.
fn pick(live: &[u32], me: u32, k: usize, rng: &mut SmallRng) -> Vec<u32> {
    let others = live.len() - usize::from(live.contains(&me));
    if others <= k {
        return live.iter().copied().filter(|&c| c != me).collect();
    }
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        let c = live[rng.gen_range(0..live.len())];
        if c != me && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: DiscoveryConfig = DiscoveryConfig {
        interval: 5_000,
        refresh: 60_000,
        contacts: 2,
    };

    #[test]
    fn an_isolated_node_asks_every_gap_and_backs_off_while_nothing_is_new() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut s = Schedule::new(0, &CFG, &mut rng);
        assert!((45_000..=75_000).contains(&s.due(&CFG)), "full: refresh");
        s.view(0, 5, 1_000);
        let first = s.due(&CFG);
        assert!((3_750..=6_250).contains(&first), "isolated: one gap");
        s.ran(first, false, &CFG, &mut rng);
        let second = s.due(&CFG) - first;
        assert!((7_500..=12_500).contains(&second), "doubled: {second}");
        s.ran(first + second, true, &CFG, &mut rng);
        let third = s.due(&CFG) - first - second;
        assert!((3_750..=6_250).contains(&third), "new contacts reset it");
    }

    #[test]
    fn a_short_node_waits_a_whole_interval_first() {
        let mut rng = SmallRng::seed_from_u64(2);
        let mut s = Schedule::new(0, &CFG, &mut rng);
        s.view(3, 5, 20_000);
        assert_eq!(s.due(&CFG), 25_000);
        s.view(5, 5, 21_000);
        assert!(s.due(&CFG) >= 45_000, "full again: back to refresh");
    }

    #[test]
    fn answers_are_distinct_live_nodes_without_the_asker() {
        let mut rng = SmallRng::seed_from_u64(3);
        let live = [1, 4, 7, 9, 12];
        for _ in 0..100 {
            let a = pick(&live, 7, 3, &mut rng);
            assert_eq!(a.len(), 3);
            assert!(a.iter().all(|c| live.contains(c) && *c != 7));
            assert!((0..3).all(|i| !a[i + 1..].contains(&a[i])));
        }
        assert_eq!(pick(&live, 7, 9, &mut rng), [1, 4, 9, 12]);
        assert_eq!(pick(&[7], 7, 1, &mut rng), Vec::<u32>::new());
    }
}
