//! End-to-end with podman and skopeo (filled in below).
