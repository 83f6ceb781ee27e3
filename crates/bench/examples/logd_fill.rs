//! Sends N realistic messages (the `bench logd` generator) to a logd TCP listener:
//! `cargo run --release -p flotilla-bench --example logd_fill -- 127.0.0.1:5514 1000000`
//! (for profiling queries by hand).
#![allow(clippy::unwrap_used)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args[1].parse().unwrap();
    let n: u64 = args[2].parse().unwrap();
    let raw = flotilla_bench::logd::send_realistic(addr, 0x1065, n, 2).unwrap();
    println!("sent {n} messages, {raw} bytes");
}
