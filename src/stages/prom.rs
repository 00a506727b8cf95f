//! Prometheus wire formats (being written).
