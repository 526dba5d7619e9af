//! Repository operations with their actor, between the API handlers and [`storage`]
//! (crate::registry::storage). Each operation emits a typed [`event::Event`] after its
//! effect is durable. (Being built: the handlers still call storage directly.)

pub mod browse;
pub mod event;
