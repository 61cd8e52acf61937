//! The `gatewayd` binary.
fn main() {}
