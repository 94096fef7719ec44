//! **partition**: build, split the live nodes into two random halves that
//! cannot reach each other for R rounds, heal, R more rounds.

use super::{Experiment, Params};
use crate::engine::Sim;
use crate::measure::snapshot;
use crate::report::Report;
use rand::seq::SliceRandom;

#[derive(Default)]
pub(super) struct Partition {
    /// Components at the heal, then after each round.
    components: Vec<usize>,
}

impl Experiment for Partition {
    fn measured_rounds(&self, p: &Params) -> usize {
        2 * p.rounds
    }

    fn start(&mut self, sim: &mut Sim, _p: &Params) {
        let mut live = sim.live_nodes();
        live.shuffle(sim.rng());
        let mut groups = vec![0u8; sim.nodes.len()];
        for &i in &live[..live.len() / 2] {
            groups[i as usize] = 1;
        }
        sim.partition(&groups);
    }

    fn before_round(&mut self, sim: &mut Sim, p: &Params, r: usize) {
        if r == p.rounds {
            sim.heal();
            self.components.push(snapshot(sim).structure.components);
        }
    }

    fn after_round(&mut self, sim: &mut Sim, p: &Params, r: usize) {
        if r >= p.rounds {
            self.components.push(snapshot(sim).structure.components);
        }
    }

    fn finish(&self, report: &mut Report) {
        let mut comps = self.components.clone();
        if comps.is_empty() {
            // No rounds: healed at once.
            comps.push(report.structure.components);
        }
        report.rounds_to_merge = Some(comps.iter().position(|&x| x == 1));
        report.components_per_round = Some(comps);
    }
}
