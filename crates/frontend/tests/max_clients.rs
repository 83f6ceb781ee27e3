//! The connection cap: past `max_clients`, a client gets `Error{Overloaded}` and is
//! closed at once (so it can pick another front-end); a slot freed is reused.

// Tests and benchmarks are shells: they drive real time, sockets and tasks.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::BytesMut;
use flotilla_frontend::{FrontendConfig, FrontendServer};
use flotilla_wire::{ClientToFrontend, Decoder, ErrorCode, FrontendToClient, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

async fn hello(fe: &FrontendServer) -> TcpStream {
    let mut stream = TcpStream::connect(fe.local_addr()).await.unwrap();
    let mut out = BytesMut::new();
    ClientToFrontend::Hello {
        version: flotilla_wire::PROTOCOL_VERSION,
        session_token: None,
        client_name: "capped".into(),
    }
    .encode(&mut out);
    stream.write_all(&out).await.unwrap();
    stream
}

async fn first_frame(stream: &mut TcpStream) -> Option<FrontendToClient> {
    let mut decoder = Decoder::default();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(frame) = decoder.next_message::<FrontendToClient>().unwrap() {
            return Some(frame);
        }
        let n = tokio::time::timeout(LIMIT, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            return None;
        }
        decoder.feed(&buf[..n]);
    }
}

#[tokio::test]
async fn clients_past_the_cap_are_told_overloaded_and_closed() {
    let fe = FrontendServer::bind(FrontendConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_clients: 2,
        ..FrontendConfig::default()
    })
    .await
    .unwrap();
    let mut a = hello(&fe).await;
    let mut b = hello(&fe).await;
    assert!(matches!(
        first_frame(&mut a).await,
        Some(FrontendToClient::Welcome { .. })
    ));
    assert!(matches!(
        first_frame(&mut b).await,
        Some(FrontendToClient::Welcome { .. })
    ));
    let mut c = hello(&fe).await;
    match first_frame(&mut c).await {
        Some(FrontendToClient::Error { code, .. }) => assert_eq!(code, ErrorCode::Overloaded),
        other => panic!("expected Error{{Overloaded}}, got {other:?}"),
    }
    // Then the connection ends (EOF, or a reset if our hello arrived after the close).
    let mut rest = Vec::new();
    match tokio::time::timeout(LIMIT, c.read_to_end(&mut rest))
        .await
        .unwrap()
    {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert_eq!(fe.stats().refused, 1);
    // A slot freed is reused.
    drop(a);
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let mut d = hello(&fe).await;
        if matches!(
            first_frame(&mut d).await,
            Some(FrontendToClient::Welcome { .. })
        ) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the freed slot was never reused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(b);
    fe.shutdown().await;
}
