//! htpasswd files (being written).
