//! Proxying a route to an upstream URL (being written).
