//! One address cannot take a whole front-end: `flotilla frontend --max-clients-per-ip N`
//! answers the connections past N from one IP address with `Error{Overloaded}` (and
//! closes them at once), while other addresses are still welcomed and a slot freed by a
//! closed connection can be used again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, free_port, next_message};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_wire::{ClientToFrontend, Decoder, ErrorCode, FrontendToClient, Message};

/// Connects to `to` from `from` (any port) and says hello; returns the first answer.
fn hello_from(from: &str, to: &str) -> (TcpStream, Option<FrontendToClient>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    let target: SocketAddr = to.parse().unwrap();
    socket.connect(&target.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let hello = ClientToFrontend::Hello {
        version: flotilla_wire::PROTOCOL_VERSION,
        session_token: None,
        client_name: "crowd".into(),
    };
    stream.write_all(&hello.encode_to_bytes()).unwrap();
    let mut decoder = Decoder::default();
    let answer = next_message(&mut stream, &mut decoder);
    (stream, answer)
}

fn welcomed(answer: &Option<FrontendToClient>) -> bool {
    matches!(answer, Some(FrontendToClient::Welcome { .. }))
}

#[test]
fn connections_past_the_per_address_cap_are_told_overloaded_and_others_are_not() {
    let addr = format!("127.0.0.1:{}", free_port());
    let _frontend = Running(
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args([
                "frontend",
                "--listen",
                &addr,
                "--game",
                &format!("127.0.0.1:{}", free_port()),
                "--max-clients-per-ip",
                "3",
                "--seconds",
                "60",
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the front-end never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Three from one address are welcomed.
    let mut crowd = Vec::new();
    while crowd.len() < 3 {
        let (stream, answer) = hello_from("127.0.0.2", &addr);
        if welcomed(&answer) {
            crowd.push(stream);
        } else {
            assert!(Instant::now() < deadline, "{answer:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The 4th and 5th from the same address are refused with a reason.
    for _ in 0..2 {
        let (_stream, answer) = hello_from("127.0.0.2", &addr);
        match answer {
            Some(FrontendToClient::Error {
                code: ErrorCode::Overloaded,
                text,
            }) => assert!(text.contains("from your address"), "{text}"),
            other => panic!("not refused: {other:?}"),
        }
    }
    // Another address is welcomed.
    let (_other, answer) = hello_from("127.0.0.3", &addr);
    assert!(welcomed(&answer), "{answer:?}");
    // A slot freed on the crowded address is usable again (once the front-end has seen
    // the close).
    drop(crowd.pop());
    loop {
        let (stream, answer) = hello_from("127.0.0.2", &addr);
        if welcomed(&answer) {
            crowd.push(stream);
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}
