//! Helpers shared by the binary's tests that speak the client protocol on raw sockets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::Duration;

use flotilla_wire::{ClientToFrontend, Decoder, FrontendToClient, Message, PROTOCOL_VERSION};

/// A child process killed and reaped when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects to the front-end at `addr` (reads time out after `read_timeout`) and sends a
/// hello without a token from `client_name`.
pub fn connect_and_hello(addr: &str, client_name: &str, read_timeout: Duration) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(read_timeout)).unwrap();
    let hello = ClientToFrontend::Hello {
        version: PROTOCOL_VERSION,
        session_token: None,
        client_name: client_name.into(),
    };
    stream.write_all(&hello.encode_to_bytes()).unwrap();
    stream
}

/// The next message from the front-end on `stream`; `None` at the end of the stream.
/// Panics when the read times out.
pub fn next_message(stream: &mut TcpStream, decoder: &mut Decoder) -> Option<FrontendToClient> {
    loop {
        if let Some(message) = decoder.next_message::<FrontendToClient>().unwrap() {
            return Some(message);
        }
        let mut buf = [0u8; 8192];
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(read) => decoder.feed(&buf[..read]),
            Err(error) => panic!("no answer from the front-end in time: {error}"),
        }
    }
}

/// Waits until something listens on `addr`; panics after `limit`.
pub fn wait_for_port(addr: &str, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
