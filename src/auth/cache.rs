//! The verified-login cache (being written).
