//! A front-end gives its memory back after a burst (the chaos findings of issue 10):
//! 2,000 connections that each send most of a 64 KiB input and stop, then 50 clients
//! that flood pings without reading. Once they are all gone, the front-end's resident
//! memory must come back near where it started, not stay at the burst's peak.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, free_port, wait_for_port};
use flotilla_wire::{ClientToFrontend, Message, PROTOCOL_VERSION};

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// The resident memory of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// The lowest RSS seen over `span` (the allocator gives memory back with a delay).
fn settled_rss(pid: u32, span: Duration) -> u64 {
    let deadline = Instant::now() + span;
    let mut lowest = rss(pid);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        lowest = lowest.min(rss(pid));
    }
    lowest
}

fn hello() -> Vec<u8> {
    ClientToFrontend::Hello {
        version: PROTOCOL_VERSION,
        session_token: None,
        client_name: "burst".into(),
    }
    .encode_to_bytes()
    .to_vec()
}

#[test]
fn memory_comes_back_after_partial_frame_and_ping_flood_bursts() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let frontend = Running(
        Command::new(BIN)
            .args(["frontend", "--listen", &addr, "--game", "127.0.0.1:9"])
            .args(["--max-clients-per-ip", "10000", "--seconds", "120"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = frontend.0.id();
    wait_for_port(&addr, Duration::from_secs(10));
    let before = settled_rss(pid, Duration::from_secs(1));

    // 2,000 clients send a hello and most of a 64 KiB input, then stop.
    let mut partial = hello();
    // A frame of 64 KiB - 1 (length prefix: type byte + body), of which 60 KiB arrive.
    let len: u32 = 64 * 1024 - 1;
    partial.extend_from_slice(&len.to_be_bytes());
    partial.push(0x10);
    partial.extend(std::iter::repeat_n(0xab_u8, 60 * 1024));
    let mut idle = Vec::new();
    for _ in 0..2000 {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.write_all(&partial).unwrap();
        idle.push(stream);
    }
    std::thread::sleep(Duration::from_secs(1));
    let peak_partial = rss(pid);
    drop(idle);

    // 50 clients flood pings and never read.
    let ping = ClientToFrontend::Ping { nonce: 7 }
        .encode_to_bytes()
        .to_vec();
    let flood: Vec<u8> = hello()
        .into_iter()
        .chain(ping.iter().copied().cycle().take(ping.len() * 4096))
        .collect();
    let mut flooders = Vec::new();
    for _ in 0..50 {
        let stream = TcpStream::connect(&addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        flooders.push(stream);
    }
    let flood_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < flood_until {
        for stream in &mut flooders {
            let _ = stream.write(&flood);
        }
    }
    let peak_flood = rss(pid);
    drop(flooders);

    let after = settled_rss(pid, Duration::from_secs(4));
    eprintln!(
        "front-end RSS: before {} MB, partial frames {} MB, ping floods {} MB, after {} MB",
        before >> 20,
        peak_partial >> 20,
        peak_flood >> 20,
        after >> 20
    );
    assert!(
        peak_partial > before + (20 << 20),
        "the burst should have cost memory (the test must measure something): {} -> {}",
        before >> 20,
        peak_partial >> 20
    );
    assert!(
        after < before + (16 << 20),
        "the front-end kept {} MB after the bursts ({} MB before)",
        after >> 20,
        before >> 20
    );
}
