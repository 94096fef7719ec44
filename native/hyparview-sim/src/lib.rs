//! Simulation engine (to be written).
