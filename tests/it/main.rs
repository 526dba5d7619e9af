//! wharf's integration tests: one binary, every test against a real server on 127.0.0.1:0.

mod azurite;
mod backends;
mod moto;
mod pki;
mod support;

mod api_base;
mod auth;
mod blobs;
mod certs;
mod cli;
mod clients;
mod crash;
mod front_door;
mod fs_storage;
mod htpasswd;
mod ldap;
mod limits;
mod listing;
mod malformed;
mod manifests;
mod nodes;
mod observability;
mod oci_client;
mod protocol_edges;
mod proxy;
mod rate_limits;
mod referrers;
mod tls_e2e;
mod uploads;
