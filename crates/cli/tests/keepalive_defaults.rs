//! The keep-alive defaults of PROTOCOL.md section 7, end to end: a `flotilla frontend`
//! process with its default settings, a `Client` with `ClientConfig::default()` and a raw
//! connection that says hello and then nothing. Nothing here overrides an interval.
//!
//! - An idle client (no world subscribed) stays connected: it probes its front-end every
//!   0.5 s unheard and hears a pong each time.
//! - A front-end frozen with SIGSTOP (silence, no reset) is given up by the client after
//!   1.5 s of silence, with the timeout as the reason.
//! - A peer that says hello and then nothing is kept past the old 6 s rule, and not pinged
//!   before 20 s of quiet: its kernel acknowledges the front-end kernel's keep-alive
//!   probes, which is all the front-end needs (the frame-silence backstop is 60 s).
//! - A peer that never says hello is closed with `Error{Timeout}` after 6 s.
//!
//! The bounds asserted on times are lower bounds (a timer that fires early is a bug) and
//! hang guards; the measured times are printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{free_port, next_message};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_client::{Client, ClientConfig, ClientEvent, DisconnectReason};
use flotilla_wire::{
    CLIENT_IDLE_TIMEOUT, CLIENT_PING_INTERVAL, Decoder, ErrorCode, FRONTEND_HANDSHAKE_TIMEOUT,
    FRONTEND_PING_INTERVAL, FrontendToClient,
};

/// How long the silent peer listens: past the 6 s a client once had to send a frame in.
const SILENT_FOR: Duration = Duration::from_secs(9);

/// A child process killed (and continued first, if stopped) and reaped when dropped.
struct Running(Child);

impl Running {
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn flotilla() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
}

/// A hello on a raw socket; returns the socket once the `Welcome` came.
fn raw_hello(addr: &str) -> (TcpStream, Decoder) {
    let mut stream = common::connect_and_hello(addr, "silent", Duration::from_secs(20));
    let mut decoder = Decoder::default();
    match next_message(&mut stream, &mut decoder) {
        Some(FrontendToClient::Welcome { .. }) => {}
        other => panic!("expected Welcome, got {other:?}"),
    }
    (stream, decoder)
}

#[test]
fn the_default_keep_alive_holds_idle_connections_and_detects_silence_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.key");
    std::fs::write(&key, "5a".repeat(32)).unwrap();
    let game_addr = format!("127.0.0.1:{}", free_port());
    let frontend_addr = format!("127.0.0.1:{}", free_port());
    let _game = Running(
        flotilla()
            .args(["game", "--listen", &game_addr, "--seconds", "60"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let frontend = Running(
        flotilla()
            .args(["frontend", "--listen", &frontend_addr, "--game", &game_addr])
            .args(["--seconds", "60"])
            .arg("--token-key-file")
            .arg(&key)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match Client::connect(frontend_addr.as_str(), ClientConfig::default()).await {
                Ok(client) => break client,
                Err(error) => {
                    assert!(Instant::now() < deadline, "front-end never up: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let mut events = client.take_events().unwrap();

        // The front-end side's rules run alongside: hello then nothing, and no hello at all.
        let silent_addr = frontend_addr.clone();
        let silent = std::thread::spawn(move || {
            let (mut stream, mut decoder) = raw_hello(&silent_addr);
            let welcomed = Instant::now();
            let mut pings = Vec::new();
            loop {
                let left = SILENT_FOR.saturating_sub(welcomed.elapsed());
                if left.is_zero() {
                    break;
                }
                stream.set_read_timeout(Some(left)).unwrap();
                let mut buf = [0u8; 1024];
                match std::io::Read::read(&mut stream, &mut buf) {
                    Ok(0) => panic!("closed after {:?}", welcomed.elapsed()),
                    Ok(read) => decoder.feed(&buf[..read]),
                    Err(error)
                        if matches!(
                            error.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(error) => panic!("after {:?}: {error}", welcomed.elapsed()),
                }
                while let Some(message) = decoder.next_message::<FrontendToClient>().unwrap() {
                    match message {
                        FrontendToClient::Ping { .. } => pings.push(welcomed.elapsed()),
                        other => panic!("after {:?}: {other:?}", welcomed.elapsed()),
                    }
                }
            }
            pings
        });
        let mute_addr = frontend_addr.clone();
        let mute = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(&mute_addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let connected = Instant::now();
            let mut decoder = Decoder::default();
            let error = match next_message(&mut stream, &mut decoder) {
                Some(FrontendToClient::Error { code, text }) => (code, text),
                other => panic!("expected Error, got {other:?}"),
            };
            let closed_after = connected.elapsed();
            (error, closed_after, next_message(&mut stream, &mut decoder))
        });

        // Idle for 4 s: the client probes every 0.5 s unheard and hears every pong.
        let before = client.stats();
        let idle = Duration::from_secs(4);
        tokio::time::sleep(idle).await;
        let after = client.stats();
        assert!(
            client.is_connected(),
            "an idle client was dropped: {after:?}"
        );
        let probes = after.frames_sent - before.frames_sent;
        let heard = after.frames_received - before.frames_received;
        eprintln!("idle 4 s with the defaults: {probes} frames sent, {heard} received");
        // At most one probe per 0.5 s (plus one in flight at each end); on a loaded machine
        // fewer, never none.
        let most = (idle.as_millis() / CLIENT_PING_INTERVAL.as_millis()) as u64 + 2;
        assert!((1..=most).contains(&probes), "{probes} probes in 4 s");
        assert!(heard >= 1, "no pong heard");

        // Freeze the front-end: silence without a reset.
        frontend.signal("-STOP");
        let stopped = Instant::now();
        let reason = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match events.recv().await {
                    Some(ClientEvent::Disconnected { reason }) => return reason,
                    Some(_) => {}
                    None => panic!("events ended without Disconnected"),
                }
            }
        })
        .await
        .expect("the client noticed the frozen front-end");
        let noticed = stopped.elapsed();
        frontend.signal("-CONT");
        eprintln!("frozen front-end given up after {noticed:?}: {reason:?}");
        assert_eq!(reason, DisconnectReason::Timeout);
        // Silence counts from the last frame heard: at most one probe period (and a round
        // trip) before the stop.
        assert!(
            noticed >= CLIENT_IDLE_TIMEOUT - CLIENT_PING_INTERVAL - Duration::from_millis(100),
            "gave up after only {noticed:?}"
        );

        let pings = silent.join().unwrap();
        eprintln!("silent peer: pinged at {pings:?}, still connected after {SILENT_FOR:?}");
        assert!(
            pings.iter().all(|at| *at >= FRONTEND_PING_INTERVAL),
            "pinged before {FRONTEND_PING_INTERVAL:?} of quiet: {pings:?}"
        );
        let ((code, text), closed_after, end) = mute.join().unwrap();
        eprintln!("mute peer: closed after {closed_after:?} ({code:?}: {text})");
        assert_eq!(code, ErrorCode::Timeout, "{text}");
        assert!(text.starts_with("nothing received for"), "{text}");
        assert!(
            closed_after >= FRONTEND_HANDSHAKE_TIMEOUT,
            "{closed_after:?}"
        );
        assert!(
            end.is_none(),
            "the connection ends after the Error: {end:?}"
        );
    });
}
