//! wharf: a private container registry with its own front door, in one binary.
//!
//! See `docs/ARCHITECTURE.md` for the map: `server` accepts connections and hands requests
//! to `gateway`, which dispatches them to the `registry` engine on top of its `storage`.

pub mod auth;
pub mod config;
pub mod events;
pub mod gateway;
pub mod gc;
pub mod http_client;
pub mod http_util;
pub mod import_config;
/// The parsers' promises, for the fuzz targets in `fuzz/` and the properties in the tests.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod invariants;
pub mod mirror;
pub mod registry;
pub mod server;
pub mod tls;
pub mod ui;
