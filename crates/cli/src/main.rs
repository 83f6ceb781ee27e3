//! `flotilla`: the one binary.
fn main() {}
