//! A client that half-closes while not reading must not pin a socket in the front-end.
//!
//! Alone in its test binary: it counts the process's open file descriptors.

// Tests and benchmarks are shells: they drive real time, sockets and tasks.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure.

use std::time::{Duration, Instant};

use flotilla_frontend::{FrontendConfig, FrontendServer};
use flotilla_wire::{ClientToFrontend, Message};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Connects with a tiny receive buffer, says hello, then sends `pings` pings without ever
/// reading: the front-end's pongs fill the socket until its writes would block.
async fn flooding_client(addr: std::net::SocketAddr, pings: u64) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let mut out = ClientToFrontend::Hello {
        version: 1,
        session_token: None,
        client_name: "reader-never".into(),
    }
    .encode_to_bytes()
    .to_vec();
    for nonce in 0..pings {
        out.extend_from_slice(&ClientToFrontend::Ping { nonce }.encode_to_bytes());
    }
    stream.write_all(&out).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_that_never_reads_releases_its_socket() {
    let config = FrontendConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        server_id: "fe-fd".into(),
        seed: Some(3),
        // Room for every pong: the socket, not the budget, must be what is full.
        max_queued_bytes: 64 << 20,
        ..FrontendConfig::default()
    };
    let server = FrontendServer::bind(config).await.unwrap();
    let addr = server.local_addr();
    // No wait: `bind` returns with every descriptor the idle front-end holds (its
    // listener and its runtime's, built before its thread starts).
    let baseline = open_fds();

    const CLIENTS: usize = 4;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(flooding_client(addr, 1_000_000).await);
    }
    // Let the front-end read everything and block on its pongs (more than the kernel's
    // socket buffers take).
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().machine.client_frames_in < (CLIENTS as u64) * 1_000_001 {
        assert!(Instant::now() < deadline, "pings not all read in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The pongs outgrow the kernel's socket buffers: the front-end queues the rest.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.stats().machine.bytes_queued == 0 {
        assert!(
            Instant::now() < deadline,
            "the front-end's writes must be blocked for this test to mean anything"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        open_fds() >= baseline + 2 * CLIENTS,
        "both ends of every connection are open"
    );
    for client in &mut clients {
        client.shutdown().await.unwrap(); // half-close: FIN, but keep not reading
    }

    // Our client sockets stay open; the front-end's ends must be released.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let open = open_fds();
        if open <= baseline + CLIENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} descriptors still open beyond our {CLIENTS} client sockets",
            open - baseline - CLIENTS
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The machine forgot the sessions too (its counters follow at the end of the turn).
    while server.stats().machine.connections != 0 {
        assert!(Instant::now() < deadline, "sessions not closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(clients);
    server.shutdown().await;
}
