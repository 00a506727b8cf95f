//! Timestamps (being written).
