//! **failure**: build, kill a random fraction `--fail` of the nodes at
//! once, then R rounds.

use super::{Experiment, Params};
use crate::engine::Sim;
use rand::seq::SliceRandom;

pub(super) struct Failure;

impl Experiment for Failure {
    fn start(&mut self, sim: &mut Sim, p: &Params) {
        let mut live = sim.live_nodes();
        live.shuffle(sim.rng());
        let k = (p.fail * live.len() as f64).round() as usize;
        for &i in &live[..k] {
            sim.kill(i);
        }
    }
}
