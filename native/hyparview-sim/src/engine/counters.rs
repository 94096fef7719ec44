//! What the simulated transport counts.

use hyparview::MessageKind;

/// Transport counters, reset at the start of a measured phase.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub sends: u64,
    /// Sends per message kind, in the order of [`MessageKind::ALL`].
    pub kinds: [u64; MessageKind::ALL.len()],
    pub delivered: u64,
    pub dial_failures: u64,
    /// `ConnectionLost` inputs fed.
    pub connections_lost: u64,
    pub idle_closed: u64,
    /// Active peers reported lost for having no connection (orphan check).
    pub orphans_reported: u64,
}

impl Counters {
    pub(super) fn count_kind(&mut self, kind: MessageKind) {
        self.kinds[kind as usize] += 1;
    }

    /// Sends per message kind, by name (kinds never sent are left out).
    pub fn by_kind(&self) -> std::collections::BTreeMap<&'static str, u64> {
        MessageKind::ALL
            .iter()
            .zip(self.kinds)
            .filter(|&(_, n)| n > 0)
            .map(|(k, n)| (k.name(), n))
            .collect()
    }
}
