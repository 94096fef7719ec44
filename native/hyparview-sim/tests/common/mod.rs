//! Helpers shared by the simulator's integration tests.

use hyparview_sim::Sim;

/// Ordered pairs (a, b) of live nodes with b in a's active view but not
/// the reverse.
pub fn asymmetric_pairs(sim: &Sim) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for a in sim.live_nodes() {
        for b in sim.active_indices(a) {
            if sim.is_alive(b) && !sim.active_indices(b).contains(&a) {
                out.push((a, b));
            }
        }
    }
    out
}
