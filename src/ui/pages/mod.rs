//! The HTML pages, one file per page family, built with maud (checked at compile time).

pub mod forms;
pub mod image;
pub mod layout;
pub mod repo;
pub mod repos;
pub mod storage;
