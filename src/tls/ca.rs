//! wharf's certificate authority (being written).
