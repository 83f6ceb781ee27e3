//! A game server that stops reading must not make the front-end queue client inputs
//! without bound: the front-end stops reading clients instead (TCP pushes back on them),
//! does not time them out for the silence it causes, and closes the stuck link after the
//! game idle timeout so that it reads clients again.

// Tests and benchmarks are shells: they drive real time, sockets and tasks.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure.

use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_frontend::{FrontendConfig, FrontendServer};
use flotilla_wire::{
    ClientToFrontend, Decoder, FrontendToClient, FrontendToGame, GameToFrontend, Message, WorldId,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A game server that completes the handshake, announces `arena`, then never reads again
/// (its socket stays open; it keeps pinging so the link is not idle).
async fn stuck_game(listener: TcpListener) {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut decoder = Decoder::default();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        decoder.feed(&buf[..n]);
        if let Some(FrontendToGame::Hello { .. }) = decoder.next_message().unwrap() {
            break;
        }
    }
    let mut out = GameToFrontend::Welcome {
        version: 1,
        server_id: "stuck".into(),
    }
    .encode_to_bytes()
    .to_vec();
    out.extend_from_slice(
        &GameToFrontend::WorldAdded {
            world: WorldId::new("arena").unwrap(),
            info: Bytes::from_static(b"{}"),
        }
        .encode_to_bytes(),
    );
    stream.write_all(&out).await.unwrap();
    for nonce in 0.. {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if stream
            .write_all(&GameToFrontend::Ping { nonce }.encode_to_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_game_pauses_clients_without_losing_them_and_is_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let game_addr = listener.local_addr().unwrap();
    tokio::spawn(stuck_game(listener));
    const LIMIT: usize = 256 << 10;
    const CLIENT_IDLE: Duration = Duration::from_secs(1);
    let server = FrontendServer::bind(FrontendConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        game_servers: vec![game_addr.to_string()],
        max_game_queued_bytes: LIMIT,
        // The pause lasts about `game_idle_timeout`: longer than a client may be silent.
        client_idle_timeout: CLIENT_IDLE,
        client_ping_interval: Duration::from_millis(500),
        game_idle_timeout: Duration::from_secs(2),
        seed: Some(5),
        // The client floods inputs on purpose (what is tested is the stuck game link's
        // backpressure): no input budget.
        max_inputs_per_second: 0,
        ..FrontendConfig::default()
    })
    .await
    .unwrap();

    let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
    client
        .write_all(
            &ClientToFrontend::Hello {
                version: 1,
                session_token: None,
                client_name: "flood".into(),
            }
            .encode_to_bytes(),
        )
        .await
        .unwrap();
    // Wait for the world to be routable: the welcome, then the game link's Welcome and
    // WorldAdded (its first two frames) handled.
    let mut decoder = Decoder::default();
    let mut buf = [0u8; 4096];
    let n = client.read(&mut buf).await.unwrap();
    decoder.feed(&buf[..n]);
    assert!(matches!(
        decoder.next_message::<FrontendToClient>().unwrap(),
        Some(FrontendToClient::Welcome { .. })
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let machine = server.stats().machine;
        if machine.games_ready > 0 && machine.game_frames_in >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "game link not ready or arena not announced: {machine:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 64 MiB of inputs, far more than the socket buffers and the limit.
    let input = ClientToFrontend::Input {
        world: WorldId::new("arena").unwrap(),
        payload: Bytes::from(vec![b'x'; 1000]),
    }
    .encode_to_bytes();
    let chunk: Vec<u8> = input
        .iter()
        .copied()
        .cycle()
        .take(input.len() * 256)
        .collect();
    let (mut reader, mut writer) = client.into_split();
    let flood = tokio::spawn(async move {
        for _ in 0..256 {
            writer.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(writer)
    });

    // The front-end stops reading the client while the game link is full...
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.stats().client_read_pauses == 0 {
        assert!(Instant::now() < deadline, "reading never paused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let paused_at = Instant::now();
    // The overshoot past the limit is bounded by what was already in flight to the loop.
    let queued = server.stats().game_bytes_queued;
    assert!(queued < 16 << 20, "{queued} bytes queued for the game");

    // ...then closes the link that does not read, and reads the client again: the flood
    // completes, and the client, silent far longer than its idle timeout while it was not
    // read, is still connected.
    let mut writer = tokio::time::timeout(Duration::from_secs(20), flood)
        .await
        .expect("the front-end never read the client again")
        .unwrap()
        .expect("the client lost its connection");
    assert!(
        paused_at.elapsed() > CLIENT_IDLE,
        "the pause ({:?}) was shorter than the client idle timeout",
        paused_at.elapsed()
    );
    let stats = server.stats();
    assert_eq!(stats.machine.game_links_stalled, 1, "{stats:?}");
    assert_eq!(stats.machine.connections, 1, "{stats:?}");

    writer
        .write_all(&ClientToFrontend::Ping { nonce: 77 }.encode_to_bytes())
        .await
        .unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            while let Some(message) = decoder.next_message::<FrontendToClient>().unwrap() {
                match message {
                    FrontendToClient::Pong { nonce: 77 } => return,
                    FrontendToClient::Error { code, text } => {
                        panic!("the client got Error {code:?}: {text}")
                    }
                    _ => {}
                }
            }
            let n = reader.read(&mut buf).await.unwrap();
            assert!(n > 0, "the front-end closed the client");
            decoder.feed(&buf[..n]);
        }
    })
    .await;
    assert!(answered.is_ok(), "no pong after the pause");
    server.shutdown().await;
}
