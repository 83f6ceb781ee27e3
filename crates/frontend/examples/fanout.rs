//! A rough, in-process fan-out measurement: one in-process game server publishing
//! 100-byte changes as fast as the front-end takes them, N raw observers counting the
//! batches they receive. Usage: `cargo run --release -p flotilla-frontend --example fanout
//! -- [observers] [seconds]`. Everything shares this machine's cores, so the figure is a
//! lower bound of what a front-end alone does.

// Tests and benchmarks are shells: they drive real time, sockets and tasks.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_frontend::{FrontendConfig, FrontendServer};
use flotilla_wire::{
    ClientToFrontend, Decoder, FrameType, FrontendToGame, GameToFrontend, Message, SnapshotPart,
    WorldId,
};
use flotilla_world::WorldState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let observers: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let arena = WorldId::new("arena").unwrap();

    let game_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let game_addr = game_listener.local_addr().unwrap();
    let published = Arc::new(AtomicU64::new(0));
    let game_published = Arc::clone(&published);
    let game_arena = arena.clone();
    tokio::spawn(async move {
        let (stream, _) = game_listener.accept().await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let mut decoder = Decoder::default();
        let mut buf = vec![0u8; 4096];
        let mut world = WorldState::new(1);
        // Handshake and the first subscribe.
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            decoder.feed(&buf[..n]);
            let mut subscribed = false;
            while let Some(message) = decoder.next_message::<FrontendToGame>().unwrap() {
                match message {
                    FrontendToGame::Hello { .. } => {
                        let mut out = GameToFrontend::Welcome {
                            version: 1,
                            server_id: "g".into(),
                        }
                        .encode_to_bytes()
                        .to_vec();
                        out.extend_from_slice(
                            &GameToFrontend::WorldAdded {
                                world: game_arena.clone(),
                                info: Bytes::new(),
                            }
                            .encode_to_bytes(),
                        );
                        writer.write_all(&out).await.unwrap();
                    }
                    FrontendToGame::Subscribe { .. } => {
                        let snapshot = GameToFrontend::Snapshot {
                            world: game_arena.clone(),
                            part: SnapshotPart::Whole,
                            snapshot: world.snapshot(),
                        };
                        writer.write_all(&snapshot.encode_to_bytes()).await.unwrap();
                        subscribed = true;
                    }
                    _ => {}
                }
            }
            if subscribed {
                break;
            }
        }
        // Drain whatever the front-end sends from now on (pings, sessions).
        tokio::spawn(async move {
            while reader.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
        });
        let mut counter: u64 = 0;
        loop {
            let mut out = Vec::with_capacity(64 * 140);
            for _ in 0..64 {
                counter += 1;
                let mut tx = world.begin();
                tx.set(
                    format!("entity/{}", counter % 100),
                    format!("{counter:0100}"),
                );
                let batch = tx.commit().unwrap();
                out.extend_from_slice(&flotilla_wire::change_batch_frame(&game_arena, &batch));
            }
            if writer.write_all(&out).await.is_err() {
                return;
            }
            game_published.fetch_add(64, Ordering::Relaxed);
        }
    });

    let config = FrontendConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        game_servers: vec![game_addr.to_string()],
        ..FrontendConfig::default()
    };
    let frontend = FrontendServer::bind(config).await.unwrap();
    let addr = frontend.local_addr();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let delivered = Arc::new(AtomicU64::new(0));
    let snapshots = Arc::new(AtomicU64::new(0));
    for index in 0..observers {
        let delivered = Arc::clone(&delivered);
        let snapshots = Arc::clone(&snapshots);
        let arena = arena.clone();
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut hello = ClientToFrontend::Hello {
                version: 1,
                session_token: None,
                client_name: format!("o{index}"),
            }
            .encode_to_bytes()
            .to_vec();
            hello.extend_from_slice(
                &ClientToFrontend::Subscribe {
                    world: arena,
                    since: None,
                }
                .encode_to_bytes(),
            );
            stream.write_all(&hello).await.unwrap();
            let mut decoder = Decoder::default();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let Ok(n) = stream.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                decoder.feed(&buf[..n]);
                let mut batches = 0;
                while let Ok(Some(frame)) = decoder.next_frame() {
                    match frame.frame_type() {
                        FrameType::ChangeBatch => batches += 1,
                        FrameType::Snapshot => {
                            snapshots.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                delivered.fetch_add(batches, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Instant::now();
    let (d0, p0, s0) = (
        delivered.load(Ordering::Relaxed),
        published.load(Ordering::Relaxed),
        frontend.stats(),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = start.elapsed().as_secs_f64();
    let (d1, p1, s1) = (
        delivered.load(Ordering::Relaxed),
        published.load(Ordering::Relaxed),
        frontend.stats(),
    );
    let writes = s1.write_calls - s0.write_calls;
    let bytes = s1.bytes_written - s0.bytes_written;
    println!(
        "observers={observers} published/s={:.0} delivered/s={:.0} resyncs={} congestions={} writes/s={:.0} bytes/write={:.0} snapshots={}",
        (p1 - p0) as f64 / elapsed,
        (d1 - d0) as f64 / elapsed,
        s1.machine.resyncs,
        s1.machine.congestions,
        writes as f64 / elapsed,
        bytes as f64 / writes.max(1) as f64,
        snapshots.load(Ordering::Relaxed),
    );
    std::process::exit(0);
}
