//! The front-end at the edge, over real sockets: fleet clients over TLS (`tls://`), a
//! certificate that is not trusted, certificate reload, WebSocket and WebSocket-over-TLS
//! clients (RFC 6455 on `flotilla-ws`, the client side), WebSocket protocol errors, the
//! web page and its front-end list, and the per-address cap shared by every listener.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::{WAIT, arena, commit, game_server, until, wait_until_serving};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_client::{ClientTls, FleetClient, FleetConfig};
use flotilla_frontend::{EdgeConfig, FrontendConfig, FrontendServer, TlsFiles};
use flotilla_game::{GameConfig, GameServer, WorldHandle};
use flotilla_testkit::TestPki;
use flotilla_wire::{
    ClientToFrontend, Decoder, ErrorCode, FrontendToClient, Message, PROTOCOL_VERSION,
};
use flotilla_ws::{Control, FrameDecoder, Opcode, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A front-end of `game` with every edge listener on a free port, TLS from `tls`.
async fn edge_frontend(game: SocketAddr, tls: TlsFiles, per_ip: usize) -> FrontendServer {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = FrontendConfig {
        listen: any,
        game_servers: vec![game.to_string()],
        server_id: "edge".to_owned(),
        max_clients_per_ip: per_ip,
        edge: EdgeConfig {
            tls_listen: Some(any),
            ws_listen: Some(any),
            wss_listen: Some(any),
            tls: Some(tls),
            web_frontends: vec![
                "ws://127.0.0.1:1/ws".to_owned(),
                "ws://127.0.0.1:2/ws".to_owned(),
            ],
            web_world: Some("arena".to_owned()),
            game_tls: None,
        },
        ..FrontendConfig::default()
    };
    let server = FrontendServer::bind(config).await.unwrap();
    wait_until_serving(server.local_addr()).await;
    server
}

fn server_files(pki: &TestPki) -> TlsFiles {
    TlsFiles {
        cert: pki.server().cert_pem_path().to_owned(),
        key: pki.server().key_pem_path().to_owned(),
    }
}

fn tls_config(pki: &TestPki, frontend: SocketAddr) -> FleetConfig {
    let mut config = FleetConfig::new(vec![frontend]);
    config.client.tls = Some(ClientTls::from_ca_file(pki.ca_pem_path(), "localhost").unwrap());
    config
}

#[tokio::test]
async fn a_fleet_client_over_tls_keeps_a_replica_equal_to_the_game() {
    let pki = TestPki::generate().unwrap();
    let (game, world, _) = game_server().await;
    let frontend = edge_frontend(game.local_addr(), server_files(&pki), 0).await;
    let client = FleetClient::connect(tls_config(&pki, frontend.tls_addr().unwrap()))
        .await
        .unwrap();
    client.subscribe(arena(), None).unwrap();
    for tick in 1..=50 {
        commit(&world, tick);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    until("the TLS replica to equal the game's world", WAIT, || {
        client.digest(&arena()) == Some(world.digest())
    })
    .await;
    assert_eq!(client.position(&arena()), Some(world.position()));
    // Bytes went over the TLS listener, not the raw one.
    assert_eq!(client.frontend_addr(), frontend.tls_addr());
    client.close();
    client.closed().await;
    frontend.shutdown().await;
}

#[tokio::test]
async fn a_certificate_the_client_does_not_trust_is_refused_at_once() {
    let pki = TestPki::generate().unwrap();
    let stranger = TestPki::generate().unwrap();
    let (game, _world, _) = game_server().await;
    let frontend = edge_frontend(game.local_addr(), server_files(&pki), 0).await;
    let mut config = tls_config(&stranger, frontend.tls_addr().unwrap());
    config.failover.max_failed_rounds = Some(1);
    let outcome = timeout(WAIT, FleetClient::connect(config)).await.unwrap();
    let Err(error) = outcome else {
        panic!("an untrusted certificate must not connect");
    };
    assert!(
        format!("{error}").contains("certificate") || format!("{error:?}").contains("Certificate"),
        "the error says why: {error}"
    );
    until("the failed handshake to be counted", WAIT, || {
        frontend.stats().handshake_failures >= 1
    })
    .await;
    frontend.shutdown().await;
}

#[tokio::test]
async fn reloaded_tls_files_serve_new_connections_and_a_bad_reload_keeps_the_old_ones() {
    let first = TestPki::generate().unwrap();
    let second = TestPki::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    let install = |pki: &TestPki| {
        std::fs::copy(pki.server().cert_pem_path(), &files.cert).unwrap();
        std::fs::copy(pki.server().key_pem_path(), &files.key).unwrap();
    };
    install(&first);
    let (game, _world, _) = game_server().await;
    let frontend = edge_frontend(game.local_addr(), files.clone(), 0).await;
    let tls_addr = frontend.tls_addr().unwrap();
    let connects = |pki: &TestPki| {
        let mut config = tls_config(pki, tls_addr);
        config.failover.max_failed_rounds = Some(1);
        async move {
            match timeout(WAIT, FleetClient::connect(config)).await.unwrap() {
                Ok(client) => {
                    client.close();
                    client.closed().await;
                    true
                }
                Err(_) => false,
            }
        }
    };
    assert!(connects(&first).await);
    assert!(!connects(&second).await);

    install(&second);
    frontend.reload_tls().unwrap();
    assert!(
        connects(&second).await,
        "after the reload, the new certificate"
    );
    assert!(!connects(&first).await);

    std::fs::write(&files.key, "not a key").unwrap();
    let error = frontend.reload_tls().unwrap_err();
    assert!(format!("{error}").contains("key"), "{error}");
    assert!(
        connects(&second).await,
        "a failed reload keeps what was in use"
    );
    frontend.shutdown().await;
}

/// A WebSocket client of the front-end: the upgrade, masked binary messages out, frames
/// decoded from the binary messages in.
struct WsClient<S> {
    stream: S,
    websocket: FrameDecoder,
    frames: Decoder,
    controls: Vec<Control>,
    closed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    async fn upgrade(mut stream: S, host: &str) -> Self {
        let key = flotilla_ws::client_key(*b"flotilla-edge-ts");
        stream
            .write_all(&flotilla_ws::client_request(host, "/ws", &key))
            .await
            .unwrap();
        let mut head = Vec::new();
        let used = loop {
            let mut chunk = [0u8; 1024];
            let read = timeout(WAIT, stream.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(
                read > 0,
                "closed during the upgrade: {}",
                String::from_utf8_lossy(&head)
            );
            head.extend_from_slice(&chunk[..read]);
            if let Some(used) = flotilla_ws::parse_response(&head, &key).unwrap() {
                break used;
            }
        };
        let mut client = Self {
            stream,
            websocket: FrameDecoder::new(Role::Client, flotilla_ws::DEFAULT_MAX_PENDING_CONTROLS),
            frames: Decoder::new(flotilla_wire::DEFAULT_MAX_FRAME_LEN),
            controls: Vec::new(),
            closed: false,
        };
        let rest = head[used..].to_vec();
        client.take(&rest);
        client
    }

    fn take(&mut self, bytes: &[u8]) {
        let mut data = Vec::new();
        self.websocket
            .decode(bytes, &mut data, &mut self.controls)
            .unwrap();
        self.frames.feed(&data);
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, message: &ClientToFrontend) {
        let frame =
            flotilla_ws::client_frame(Opcode::Binary, &message.encode_to_bytes(), [7, 1, 9, 3]);
        self.send_raw(&frame).await;
    }

    /// Reads more; false at the end of the stream.
    async fn read_more(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let read = timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("the front-end answers in time")
            .unwrap_or(0);
        if read == 0 {
            self.closed = true;
            return false;
        }
        self.take(&chunk[..read]);
        true
    }

    /// The next message; `None` at the end of the stream.
    async fn next_message(&mut self) -> Option<FrontendToClient> {
        loop {
            if let Some(message) = self.frames.next_message::<FrontendToClient>().unwrap() {
                return Some(message);
            }
            if !self.read_more().await {
                return None;
            }
        }
    }

    /// The next control frame; `None` at the end of the stream.
    async fn next_control(&mut self) -> Option<Control> {
        loop {
            if !self.controls.is_empty() {
                return Some(self.controls.remove(0));
            }
            if !self.read_more().await {
                return None;
            }
        }
    }

    async fn hello(&mut self) -> FrontendToClient {
        self.send(&ClientToFrontend::Hello {
            version: PROTOCOL_VERSION,
            session_token: None,
            client_name: "ws-test".into(),
        })
        .await;
        self.next_message().await.unwrap()
    }
}

async fn tls_stream(pki: &TestPki, addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = flotilla_link::stream::client_config_from_ca_file(pki.ca_pem_path()).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = TcpStream::connect(addr).await.unwrap();
    connector
        .connect("localhost".try_into().unwrap(), stream)
        .await
        .unwrap()
}

/// Welcome, subscribe, a snapshot and live batches over `client`; a WebSocket ping is
/// answered with its payload.
async fn watch_over_websocket<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut WsClient<S>,
    world: &WorldHandle,
) {
    assert!(matches!(
        client.hello().await,
        FrontendToClient::Welcome { .. }
    ));
    client
        .send(&ClientToFrontend::Subscribe {
            world: arena(),
            since: None,
        })
        .await;
    let mut snapshot = false;
    let mut batches = 0;
    let mut tick = 1000;
    while batches < 10 {
        commit(world, tick);
        tick += 1;
        match client.next_message().await.unwrap() {
            FrontendToClient::Snapshot { .. } => snapshot = true,
            FrontendToClient::ChangeBatch { .. } => batches += 1,
            _ => {}
        }
    }
    assert!(snapshot, "a snapshot before the batches");
    client
        .send_raw(&flotilla_ws::client_frame(
            Opcode::Ping,
            b"are you there",
            [1, 2, 3, 4],
        ))
        .await;
    match client.next_control().await.unwrap() {
        Control::Pong(payload) => assert_eq!(payload, b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[tokio::test]
async fn websocket_and_websocket_over_tls_clients_watch_a_world() {
    let pki = TestPki::generate().unwrap();
    let (game, world, _) = game_server().await;
    let frontend = edge_frontend(game.local_addr(), server_files(&pki), 0).await;

    let ws = frontend.ws_addr().unwrap();
    let mut plain = WsClient::upgrade(TcpStream::connect(ws).await.unwrap(), &ws.to_string()).await;
    watch_over_websocket(&mut plain, &world).await;

    let wss = frontend.wss_addr().unwrap();
    let mut secure = WsClient::upgrade(tls_stream(&pki, wss).await, &wss.to_string()).await;
    watch_over_websocket(&mut secure, &world).await;
    frontend.shutdown().await;
}

#[tokio::test]
async fn websocket_protocol_errors_close_with_their_code_and_harm_no_one_else() {
    let pki = TestPki::generate().unwrap();
    let (game, world, _) = game_server().await;
    let frontend = edge_frontend(game.local_addr(), server_files(&pki), 0).await;
    let ws = frontend.ws_addr().unwrap();
    let connect = || async move {
        WsClient::upgrade(TcpStream::connect(ws).await.unwrap(), &ws.to_string()).await
    };
    let mut bystander = connect().await;
    assert!(matches!(
        bystander.hello().await,
        FrontendToClient::Welcome { .. }
    ));

    // An unmasked frame from a client: protocol error, 1002.
    let mut unmasked = connect().await;
    unmasked
        .send_raw(&flotilla_ws::server_frame(
            Opcode::Binary,
            b"\x00\x00\x00\x01\x01",
        ))
        .await;
    assert_eq!(
        close_code(&mut unmasked).await,
        Some(flotilla_ws::close_code::PROTOCOL_ERROR)
    );

    // A text message: the front-end carries binary frames only, 1003.
    let mut text = connect().await;
    text.send_raw(&flotilla_ws::client_frame(
        Opcode::Text,
        b"hello",
        [9, 9, 9, 9],
    ))
    .await;
    assert_eq!(
        close_code(&mut text).await,
        Some(flotilla_ws::close_code::UNSUPPORTED_DATA)
    );

    // Well-formed WebSocket carrying a bad flotilla frame: the protocol's own error.
    let mut garbage = connect().await;
    garbage
        .send_raw(&flotilla_ws::client_frame(
            Opcode::Binary,
            b"\x00\x00\x00\x03\xee\xee\xee",
            [5, 6, 7, 8],
        ))
        .await;
    match garbage.next_message().await {
        Some(FrontendToClient::Error { code, .. }) => assert!(code != ErrorCode::Overloaded),
        other => panic!("expected an Error frame, got {other:?}"),
    }
    while garbage.next_message().await.is_some() {}

    // The bystander still watches.
    watch_over_websocket_after_hello(&mut bystander, &world).await;
    frontend.shutdown().await;
}

/// Subscribes an already welcomed client and waits for a batch.
async fn watch_over_websocket_after_hello<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut WsClient<S>,
    world: &WorldHandle,
) {
    client
        .send(&ClientToFrontend::Subscribe {
            world: arena(),
            since: None,
        })
        .await;
    let mut tick = 5000;
    loop {
        commit(world, tick);
        tick += 1;
        if let FrontendToClient::ChangeBatch { .. } = client.next_message().await.unwrap() {
            return;
        }
    }
}

/// Reads until the front-end's close frame; its code.
async fn close_code<S: AsyncRead + AsyncWrite + Unpin>(client: &mut WsClient<S>) -> Option<u16> {
    loop {
        match client.next_control().await {
            Some(Control::Close { code, .. }) => return code,
            Some(_) => {}
            None => panic!("the stream ended without a close frame"),
        }
    }
}

/// One HTTP request on a fresh connection; the whole answer.
async fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn the_page_and_the_front_end_list_are_served_and_bad_requests_answered() {
    let pki = TestPki::generate().unwrap();
    let (game, _world, _) = game_server().await;
    let frontend = edge_frontend(game.local_addr(), server_files(&pki), 0).await;
    let ws = frontend.ws_addr().unwrap();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {ws}\r\n\r\n");

    let page = http(ws, &get("/")).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<canvas"), "the page draws on a canvas");
    assert!(page.contains("/flotilla.js"));
    let script = http(ws, &get("/flotilla.js")).await;
    assert!(script.starts_with("HTTP/1.1 200"));
    assert!(
        script.contains("getRandomValues"),
        "the page balances with crypto randomness"
    );

    let list = http(ws, &get("/frontends")).await;
    let body = list.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["frontends"][1], "ws://127.0.0.1:2/ws");
    assert_eq!(json["world"], "arena");

    assert!(http(ws, &get("/nothing")).await.starts_with("HTTP/1.1 404"));
    assert!(
        http(
            ws,
            &format!("POST / HTTP/1.1\r\nHost: {ws}\r\nContent-Length: 0\r\n\r\n")
        )
        .await
        .starts_with("HTTP/1.1 405")
    );
    let old_version = format!(
        "GET /ws HTTP/1.1\r\nHost: {ws}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
    );
    let refused = http(ws, &old_version).await;
    assert!(refused.starts_with("HTTP/1.1 426"), "{refused}");
    assert!(refused.contains("Sec-WebSocket-Version: 13"));
    // Garbage instead of HTTP: 400, and the front-end carries on.
    assert!(
        http(ws, "\x16\x03\x01garbage\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 400")
    );
    // The page, the script, the list and the 404; the 405, 426 and 400 are failed
    // handshakes.
    until("the web requests to be counted", WAIT, || {
        let stats = frontend.stats();
        stats.web_requests >= 4 && stats.handshake_failures >= 3
    })
    .await;
    frontend.shutdown().await;
}

#[tokio::test]
async fn the_per_address_cap_counts_every_listener_and_a_websocket_refusal_says_why() {
    let pki = TestPki::generate().unwrap();
    let (game, _world, _) = game_server().await;
    // wait_until_serving's own client has come and gone: two places for this address.
    let frontend = edge_frontend(game.local_addr(), server_files(&pki), 2).await;
    let ws = frontend.ws_addr().unwrap();
    let mut first = WsClient::upgrade(TcpStream::connect(ws).await.unwrap(), &ws.to_string()).await;
    assert!(matches!(
        first.hello().await,
        FrontendToClient::Welcome { .. }
    ));
    let mut raw = TcpStream::connect(frontend.local_addr()).await.unwrap();
    raw.write_all(
        &ClientToFrontend::Hello {
            version: PROTOCOL_VERSION,
            session_token: None,
            client_name: "raw".into(),
        }
        .encode_to_bytes(),
    )
    .await
    .unwrap();
    let mut decoder = Decoder::new(flotilla_wire::DEFAULT_MAX_FRAME_LEN);
    let welcome = loop {
        if let Some(message) = decoder.next_message::<FrontendToClient>().unwrap() {
            break message;
        }
        let mut chunk = [0u8; 4096];
        let read = timeout(WAIT, raw.read(&mut chunk)).await.unwrap().unwrap();
        assert!(read > 0);
        decoder.feed(&chunk[..read]);
    };
    assert!(matches!(welcome, FrontendToClient::Welcome { .. }));

    let mut third = WsClient::upgrade(TcpStream::connect(ws).await.unwrap(), &ws.to_string()).await;
    match third.next_message().await {
        Some(FrontendToClient::Error { code, text }) => {
            assert_eq!(code, ErrorCode::Overloaded);
            assert!(text.contains("connections from your address"), "{text}");
        }
        other => panic!("expected Error{{Overloaded}}, got {other:?}"),
    }
    assert!(
        third.next_message().await.is_none(),
        "and the connection closes"
    );
    until("the refusal to be counted", WAIT, || {
        frontend.stats().refused_per_ip >= 1
    })
    .await;
    drop(first);
    frontend.shutdown().await;
}

#[tokio::test]
async fn game_links_over_tls_carry_the_world_and_an_untrusted_game_server_is_not_used() {
    let pki = TestPki::generate().unwrap();
    let tls = flotilla_link::stream::server_config_from_pem(
        pki.server().cert_pem_path(),
        pki.server().key_pem_path(),
    )
    .unwrap();
    let game = GameServer::bind(
        "127.0.0.1:0",
        GameConfig {
            tls: Some(Arc::new(tls)),
            ..GameConfig::default()
        },
    )
    .await
    .unwrap();
    let world = game.add_world(arena(), Bytes::new()).unwrap();
    commit(&world, 0);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let frontend_trusting = |ca: &std::path::Path| FrontendConfig {
        listen: any,
        game_servers: vec![game.local_addr().to_string()],
        edge: EdgeConfig {
            game_tls: Some(flotilla_frontend::GameTls {
                ca: ca.to_owned(),
                server_name: "localhost".to_owned(),
            }),
            ..EdgeConfig::default()
        },
        ..FrontendConfig::default()
    };
    let frontend = FrontendServer::bind(frontend_trusting(pki.ca_pem_path()))
        .await
        .unwrap();
    wait_until_serving(frontend.local_addr()).await;
    let client = FleetClient::connect(FleetConfig::new(vec![frontend.local_addr()]))
        .await
        .unwrap();
    client.subscribe(arena(), None).unwrap();
    for tick in 1..=30 {
        commit(&world, tick);
    }
    until(
        "the replica behind a TLS game link to equal the game's",
        WAIT,
        || client.digest(&arena()) == Some(world.digest()),
    )
    .await;
    client.close();
    client.closed().await;

    // A front-end that does not trust the game server's certificate never links up.
    let stranger = TestPki::generate().unwrap();
    let wary = FrontendServer::bind(frontend_trusting(stranger.ca_pem_path()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(wary.stats().game_connects, 0);
    assert_eq!(wary.stats().machine.games_ready, 0);
    wary.shutdown().await;
    frontend.shutdown().await;
}

#[tokio::test]
async fn one_address_cannot_hold_every_handshake_place() {
    let pki = TestPki::generate().unwrap();
    let (game, _world, _) = game_server().await;
    let frontend = edge_frontend(game.local_addr(), server_files(&pki), 0).await;
    let ws = frontend.ws_addr().unwrap();
    // A slow client opens connections and never sends its request.
    let mut held = Vec::new();
    for _ in 0..flotilla_frontend::edge::MAX_HANDSHAKES_PER_IP {
        held.push(TcpStream::connect(ws).await.unwrap());
    }
    until("the held handshakes to be accepted", WAIT, || {
        frontend.stats().handshake_failures == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One more from the same address is closed at once...
    let mut refused = TcpStream::connect(ws).await.unwrap();
    let mut byte = [0u8; 1];
    let read = timeout(WAIT, refused.read(&mut byte)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // ...while another address is still served.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(ws).await.unwrap();
    other
        .write_all(format!("GET /frontends HTTP/1.1\r\nHost: {ws}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    timeout(WAIT, other.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert!(frontend.stats().handshake_failures >= 1);
    drop(held);
    frontend.shutdown().await;
}
