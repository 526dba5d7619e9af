//! Access rules (being written).
