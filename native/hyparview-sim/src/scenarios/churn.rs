//! **churn**: every round a random fraction `--churn` of the live nodes
//! goes away (half leave gracefully, half are killed) and as many new nodes
//! join, `join_spacing` apart, each through a random survivor. Sample 0 is
//! taken after the first step.

use super::{schedule_joins, Experiment, Params, Pool};
use crate::engine::Sim;
use crate::report::Report;
use rand::seq::SliceRandom;

#[derive(Default)]
pub(super) struct Churn {
    left: usize,
    killed: usize,
    joined: usize,
}

impl Churn {
    fn step(&mut self, sim: &mut Sim, p: &Params) {
        let mut live = sim.live_nodes();
        live.shuffle(sim.rng());
        let k = (p.churn * live.len() as f64).round() as usize;
        for (j, &i) in live[..k].iter().enumerate() {
            if j % 2 == 0 {
                sim.leave(i);
                self.left += 1;
            } else {
                sim.kill(i);
                self.killed += 1;
            }
        }
        let mut survivors: Vec<u32> = live[k..].to_vec();
        survivors.sort_unstable();
        schedule_joins(
            sim,
            k,
            p.join_spacing,
            &mut survivors,
            Pool::Fixed,
            p.contacts,
        );
        self.joined += k;
    }
}

impl Experiment for Churn {
    fn start(&mut self, sim: &mut Sim, p: &Params) {
        if p.rounds > 0 {
            self.step(sim, p);
        }
    }

    fn before_round(&mut self, sim: &mut Sim, p: &Params, r: usize) {
        if r > 0 {
            self.step(sim, p);
        }
    }

    fn finish(&self, report: &mut Report) {
        report.churn_left = Some(self.left);
        report.churn_killed = Some(self.killed);
        report.churn_joined = Some(self.joined);
    }
}
