//! PEM loading of certificate chains and private keys (being written).
