//! Writes the seed corpora of the WebSocket fuzz targets (`crates/ws/fuzz/seeds/`):
//! `upgrade/` gets request and response heads (valid and refused), `frames/` gets frame
//! streams of both directions behind the target's two split-point bytes.
//!
//! `cargo run -p flotilla-ws --example fuzz_seeds -- crates/ws/fuzz/seeds`

use flotilla_ws::{
    MAX_HEADER_LEN, Opcode, apply_mask, client_frame, client_key, client_request, close_payload,
    encode_header, http_response, server_frame, upgrade_response,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: fuzz_seeds DIR")?;
    let key = client_key([0x5a; 16]);
    let request = client_request("game.example:8080", "/ws?world=arena", &key);
    let heads: Vec<(&str, Vec<u8>)> = vec![
        ("client-request", request.clone()),
        (
            "browser-request",
            b"GET /ws HTTP/1.1\r\nHost: game.example\r\nConnection: keep-alive, Upgrade\r\n\
              Upgrade: websocket\r\nOrigin: https://game.example\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat\r\n\
              User-Agent: seed\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
                .to_vec(),
        ),
        (
            "bad-version",
            String::from_utf8(request.clone())?
                .replace("Version: 13", "Version: 8")
                .into_bytes(),
        ),
        ("plain-get", b"GET /health HTTP/1.0\r\n\r\n".to_vec()),
        (
            "post",
            b"POST /ws HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
        ),
        ("upgrade-response", upgrade_response(&key)),
        (
            "refused-response",
            http_response(403, "Forbidden", "text/plain", b"no", &[]),
        ),
    ];
    let upgrade_dir = format!("{dir}/upgrade");
    std::fs::create_dir_all(&upgrade_dir)?;
    for (name, head) in &heads {
        std::fs::write(format!("{upgrade_dir}/{name}"), head)?;
    }

    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut first_fragment = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header(false, Opcode::Binary, 3, Some(mask), &mut first_fragment);
    let mut fragmented = first_fragment[..header_len].to_vec();
    let start = fragmented.len();
    fragmented.extend_from_slice(b"Hel");
    apply_mask(&mut fragmented[start..], mask, 0);
    fragmented.extend(client_frame(Opcode::Ping, b"Hello", mask));
    fragmented.extend(client_frame(Opcode::Continuation, b"lo", mask));
    let streams: Vec<(&str, Vec<u8>)> = vec![
        (
            "client-binary",
            client_frame(Opcode::Binary, b"Hello", mask),
        ),
        ("client-fragmented-with-ping", fragmented),
        ("client-256", client_frame(Opcode::Binary, &[7; 256], mask)),
        (
            "client-close",
            client_frame(Opcode::Close, &close_payload(1000, "bye"), mask),
        ),
        ("client-text", client_frame(Opcode::Text, b"Hello", mask)),
        (
            "server-binary-ping-pong-close",
            [
                server_frame(Opcode::Binary, b"Hello"),
                server_frame(Opcode::Ping, b"Hello"),
                server_frame(Opcode::Pong, b""),
                server_frame(Opcode::Close, &close_payload(1001, "")),
            ]
            .concat(),
        ),
        (
            "server-64k-header",
            server_frame(Opcode::Binary, &[1; 65536])[..10].to_vec(),
        ),
    ];
    let frames_dir = format!("{dir}/frames");
    std::fs::create_dir_all(&frames_dir)?;
    for (name, stream) in &streams {
        for (suffix, split) in [("", 0u16), ("-split", 3)] {
            let mut seed = split.to_be_bytes().to_vec();
            seed.extend_from_slice(stream);
            std::fs::write(format!("{frames_dir}/{name}{suffix}"), seed)?;
        }
    }
    println!(
        "{} upgrade seeds, {} frames seeds in {dir}",
        heads.len(),
        streams.len() * 2
    );
    Ok(())
}
