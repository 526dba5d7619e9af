//! TLS: rustls server configuration, SNI certificate selection, PEM loading, and wharf's
//! own certificate authority.

pub mod acceptor;
pub mod ca;
pub mod error;
pub mod pem;
pub mod read_ahead;
