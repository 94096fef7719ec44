//! **rollout**: a fleet started as fleets are (a Kubernetes rollout, an
//! autoscaling group). Instead of the one-by-one build, every node joins at
//! a random moment within `--spread` ms (default 200), all through the same
//! `--contacts` K fixed nodes (default 2: nodes 0..K, which take part in
//! the rollout and list each other); then the settle rounds and R quiet
//! rounds as in stable. This is the start that can leave several components
//! whose active views are all full (issue 12; the report's
//! `components_by_sample` shows them). `failure` and `churn` build this way
//! with `--rollout`.

use super::{Experiment, Params};
use crate::engine::Sim;
use hyparview::Millis;
use rand::Rng;

pub(super) struct Rollout;

impl Experiment for Rollout {
    fn build(&mut self, sim: &mut Sim, p: &Params) {
        build(sim, p);
    }

    fn start(&mut self, _sim: &mut Sim, _p: &Params) {}
}

/// The rollout build: `p.nodes` nodes joining within `p.spread` ms through
/// nodes `0..p.contacts`, then `settle_rounds` rounds.
pub(super) fn build(sim: &mut Sim, p: &Params) {
    let start = sim.now;
    let k = p.contacts.clamp(1, p.nodes) as u32;
    let mut last = start;
    for _ in 0..p.nodes {
        let i = sim.create_node();
        let contacts: Vec<u32> = (0..k).filter(|&c| c != i).collect();
        let at = start + sim.rng().gen_range(0..=p.spread);
        last = last.max(at);
        sim.schedule_join(i, contacts, at);
    }
    sim.run_until(last + p.settle_rounds as Millis * p.shuffle_interval);
}
