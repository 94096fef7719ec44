//! tokio transport (to be written).
