//! What a loopback round trip costs on this machine, without any flotilla code: the
//! floor under `flotilla bench hop`.
//!
//! ```sh
//! cargo run --release -p flotilla-bench --example loopback_floor
//! ```
//!
//! A blocking echo thread and a blocking client thread, measured three ways: both on one
//! CPU, on two different CPUs, and placed by the scheduler; then the same client through
//! a minimal relay (one thread, non-blocking sockets, spinning on both) placed by the
//! scheduler. On a VM whose idle vCPUs halt, a wake-up on another vCPU goes through the
//! hypervisor; this shows how much that costs compared with a same-CPU switch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use flotilla_bench::affinity::{allowed_cpus, pin_current_thread};

const PAYLOAD: usize = 64;
const REQUESTS: usize = 20_000;

/// An echo server whose connection threads run on `cpu` (or anywhere).
fn echo_server(cpu: Option<usize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            stream.set_nodelay(true).unwrap();
            std::thread::spawn(move || {
                if let Some(cpu) = cpu {
                    pin_current_thread(cpu).unwrap();
                }
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A relay to `upstream`: one thread spinning on two non-blocking sockets.
fn spinning_relay(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut server = TcpStream::connect(upstream).unwrap();
        for stream in [&client, &server] {
            stream.set_nodelay(true).unwrap();
            stream.set_nonblocking(true).unwrap();
        }
        let mut buf = [0u8; 4096];
        // Small writes to an almost empty loopback socket do not block.
        let mut pass = |from: &mut TcpStream, to: &mut TcpStream| match from.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => to.write_all(&buf[..n]).is_ok(),
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        };
        while pass(&mut client, &mut server) && pass(&mut server, &mut client) {}
    });
    addr
}

/// Median and p99 of `REQUESTS` round trips over `addr`, from a thread on `cpu`.
fn measure(addr: SocketAddr, cpu: Option<usize>) -> (f64, f64) {
    std::thread::spawn(move || {
        if let Some(cpu) = cpu {
            pin_current_thread(cpu).unwrap();
        }
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let request = [7u8; PAYLOAD];
        let mut buf = [0u8; 4096];
        let mut samples = Vec::with_capacity(REQUESTS);
        for i in 0..REQUESTS + 1_000 {
            let start = Instant::now();
            stream.write_all(&request).unwrap();
            let mut got = 0;
            while got < PAYLOAD {
                got += stream.read(&mut buf).unwrap();
            }
            if i >= 1_000 {
                samples.push(start.elapsed().as_nanos() as f64 / 1_000.0);
            }
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        (at(0.5), at(0.99))
    })
    .join()
    .unwrap()
}

fn main() {
    let cpus = allowed_cpus().unwrap();
    let (first, last) = (cpus[0], *cpus.last().unwrap());
    let report = |what: &str, (p50, p99): (f64, f64)| {
        println!("{what:<52} p50 {p50:6.1} us   p99 {p99:6.1} us");
    };
    report(
        "echo, client and server on one CPU",
        measure(echo_server(Some(last)), Some(last)),
    );
    if first != last {
        report(
            "echo, client and server on different CPUs",
            measure(echo_server(Some(last)), Some(first)),
        );
    }
    report(
        "echo, placed by the scheduler",
        measure(echo_server(None), None),
    );
    report(
        "echo through a spinning relay, placed by the scheduler",
        measure(spinning_relay(echo_server(None)), None),
    );
}
