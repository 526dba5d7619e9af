//! wharf's integration tests: one binary, every test against a real server on 127.0.0.1:0.

mod support;

mod api_base;
mod blobs;
mod manifests;
mod listing;
mod referrers;
mod uploads;
mod malformed;
mod oci_client;
mod clients;
mod crash;
