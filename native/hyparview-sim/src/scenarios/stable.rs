//! **stable**: build, then R quiet rounds.

use super::{Experiment, Params};
use crate::engine::Sim;

pub(super) struct Stable;

impl Experiment for Stable {
    fn start(&mut self, _sim: &mut Sim, _p: &Params) {}
}
