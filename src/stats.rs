//! Rolling statistics (being written).
