//! The browser observer page's JavaScript (`crates/frontend/web/flotilla.js`), run in
//! headless Chromium and checked against the Rust crates.
//!
//! The Rust side builds test vectors with the real encoders (`flotilla-wire`) and the real
//! world model (`flotilla-world`): a `Welcome`, multi-part and whole `Snapshot`s, change
//! batches with upserts and removes (duplicates, gaps, other epochs), pings, outputs,
//! `Unsubscribed` and `Error` frames, malformed frames, and worlds to digest. A temporary
//! page loads a copy of `flotilla.js`, feeds the bytes to the JS decoder and session in
//! random-sized chunks, encodes the client's frames, drives a `Flotilla.Observer` over a
//! fake WebSocket and a fake clock (hello, resume with the token, keep-alive, failover,
//! backoff), and writes its results into the DOM. Headless Chromium (the test kit's,
//! driven over the DevTools protocol) loads it; the test reads that DOM, decodes the results and compares them with what the Rust crates say:
//! digests, positions, decoded frame types, error codes, and the JS-encoded frames (byte
//! for byte, and decoded by the Rust decoder).
//!
//! A second test loads `index.html` itself (with `?frontends=` pointing at a closed port,
//! under the Content-Security-Policy the front-end serves it with, as a meta tag) and checks
//! that it runs without a script error or CSP refusal and exposes every DOM id tests rely
//! on.
//!
//! Chromium is `$FLOTILLA_CHROMIUM`, `/usr/bin/chromium` or `chromium` in `$PATH`; the
//! tests fail (not skip) without it. Every wait is bounded and the browser (its whole
//! process group, its profile in a temporary folder) goes when the test drops it.

// Tests are shells: they drive real processes and time.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flotilla_testkit::Chromium;
use flotilla_wire::{
    ClientToFrontend, DEFAULT_MAX_FRAME_LEN, Decoder, ErrorCode, FrontendToClient, GameToFrontend,
    Message, RawFrame, SnapshotAssembler, SnapshotPart, WorldId,
};
use flotilla_world::{ChangeBatch, Position, Replica, ReplicaConfig, Snapshot, WorldState};
use serde_json::{Value, json};

/// The web folder of the front-end crate.
fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

// ---------------------------------------------------------------------------------------
// Running Chromium
// ---------------------------------------------------------------------------------------

/// What a page showed once loaded: its DOM, and what it logged (console calls, uncaught
/// exceptions, browser log entries such as Content-Security-Policy refusals).
struct Dump {
    dom: String,
    console: Vec<String>,
}

/// Loads `url` in headless Chromium (the test kit's browser, driven over the DevTools
/// protocol: its own process group and profile, killed when dropped), lets it run for
/// `settle` after the load, and returns its DOM and what it logged.
fn dump_dom(url: &str, settle: Duration) -> Dump {
    let browser = Chromium::launch().unwrap_or_else(|error| {
        panic!(
            "these tests need Chromium: install the Debian package `chromium` \
             (scripts/install-peers.sh does), or set FLOTILLA_CHROMIUM ({error})"
        )
    });
    let page = browser
        .open(url)
        .unwrap_or_else(|error| panic!("Chromium could not load {url}: {error}"));
    std::thread::sleep(settle);
    let dom = page
        .eval("document.documentElement.outerHTML")
        .unwrap_or_else(|error| panic!("reading the DOM of {url}: {error}"));
    Dump {
        dom: dom.as_str().unwrap_or_default().to_owned(),
        console: page.console(),
    }
}

/// What the page logged that reports a JavaScript error or a Content Security Policy
/// refusal.
fn script_errors(console: &[String]) -> Vec<&str> {
    console
        .iter()
        .map(String::as_str)
        .filter(|line| {
            line.starts_with("exception:")
                || line.contains("Uncaught")
                || line.contains("SyntaxError")
                || line.contains("ReferenceError")
                || line.contains("TypeError")
                || line.contains("Refused to")
                || line.contains("Content Security Policy")
        })
        .collect()
}

/// The text of the element with `id` in a dumped DOM (entities decoded).
fn element_text<'a>(dom: &'a str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\"");
    let at = dom.find(&marker)?;
    let open_end = at + dom[at..].find('>')? + 1;
    let close = open_end + dom[open_end..].find('<')?;
    let raw: &'a str = &dom[open_end..close];
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&nbsp;", "\u{a0}")
            .replace("&amp;", "&"),
    )
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex: {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn world(name: &str) -> WorldId {
    WorldId::new(name).unwrap()
}

/// A tiny deterministic generator for test data (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// An arena position value: x and y as little-endian f32.
fn position_value(x: f32, y: f32) -> Bytes {
    let mut value = Vec::with_capacity(8);
    value.extend_from_slice(&x.to_le_bytes());
    value.extend_from_slice(&y.to_le_bytes());
    Bytes::from(value)
}

/// An arena-like world and its history: every state (`states[seq]`) and every batch
/// (`batches[seq - 1]` brings the world to `seq`). Wanderers move every commit; a player
/// joins, leaves and comes back; a few odd keys (a prefix of another key, binary keys, an
/// empty value, a 120-byte value) change now and then.
struct History {
    states: Vec<Snapshot>,
    batches: Vec<ChangeBatch>,
}

fn make_history(epoch: u64, commits: u64, seed: u64) -> History {
    let mut rng = Rng(seed);
    let mut state = WorldState::new(epoch);
    let mut states = vec![state.snapshot()];
    let mut batches = Vec::new();
    for seq in 1..=commits {
        let mut tx = state.begin();
        for i in 0..12 {
            if seq == 1 || rng.below(3) != 0 {
                let x = rng.below(100_000) as f32 / 100.0;
                let y = rng.below(100_000) as f32 / 100.0;
                tx.set(format!("n/{i}"), position_value(x, y));
            }
        }
        match seq % 12 {
            3 => tx.set("p/1234567890123", position_value(500.0, 500.0)),
            9 => tx.remove("p/1234567890123"),
            _ => {}
        }
        if seq % 12 > 3 && seq % 12 < 9 {
            tx.set("p/1234567890123", position_value(500.0 + seq as f32, 480.5));
        }
        if seq == 1 || seq % 5 == 0 {
            tx.set("a", Bytes::new());
            tx.set("ab", Bytes::from(format!("ab at {seq}")));
            tx.set(vec![0xff_u8], Bytes::from(rng.bytes(3)));
            tx.set(vec![0x80_u8, 0x00], Bytes::from(rng.bytes(1)));
            tx.set("big/blob", Bytes::from(rng.bytes(120)));
        }
        if seq % 7 == 0 {
            tx.remove("ab");
        }
        let batch = tx.commit().expect("every commit changes something");
        assert_eq!(batch.seq, seq);
        batches.push(batch);
        states.push(state.snapshot());
    }
    History { states, batches }
}

/// The snapshot frames of `snapshot` at a maximum frame length of `max` (several parts
/// when it does not fit in one).
fn snapshot_frames(world_id: &WorldId, snapshot: &Snapshot, max: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    flotilla_wire::encode_snapshot(world_id, snapshot, max, &mut out).unwrap();
    out.to_vec()
}

fn batch_frame(world_id: &WorldId, batch: &ChangeBatch) -> Vec<u8> {
    flotilla_wire::change_batch_frame(world_id, batch).to_vec()
}

fn message(message: FrontendToClient) -> Vec<u8> {
    message.encode_to_bytes().to_vec()
}

/// A frame of any type byte and body, as is (for malformed frames).
fn raw_frame(frame_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(u32::try_from(body.len() + 1).unwrap()).to_be_bytes());
    out.push(frame_type);
    out.extend_from_slice(body);
    out
}

fn token(fill: u8) -> Bytes {
    Bytes::from(
        (0..40u8)
            .map(|i| i.wrapping_mul(7) ^ fill)
            .collect::<Vec<u8>>(),
    )
}

/// Decodes a stream of front-end frames the way a Rust client applies them (snapshot
/// assembler + replica, resync on a gap), for the expected values.
struct RustClient {
    replica: Replica,
    assembler: SnapshotAssembler,
    awaiting_snapshot: bool,
    types: Vec<String>,
    replies: Vec<Vec<u8>>,
    events: Vec<String>,
    fatal: Option<(u16, String)>,
    welcome: Option<FrontendToClient>,
}

impl RustClient {
    fn run(bytes: &[u8], watched: &WorldId) -> RustClient {
        let mut client = RustClient {
            replica: Replica::new(ReplicaConfig::CLIENT),
            assembler: SnapshotAssembler::new(),
            awaiting_snapshot: true,
            types: Vec::new(),
            replies: Vec::new(),
            events: Vec::new(),
            fatal: None,
            welcome: None,
        };
        let mut decoder = Decoder::default();
        decoder.feed(bytes);
        while let Some(raw) = decoder.next_frame().unwrap() {
            client.types.push(format!("{:?}", raw.frame_type()));
            let message = FrontendToClient::decode(&raw).unwrap();
            if client.welcome.is_none() {
                client.welcome = Some(message);
                continue;
            }
            match message {
                FrontendToClient::Ping { nonce } => client
                    .replies
                    .push(ClientToFrontend::Pong { nonce }.encode_to_bytes().to_vec()),
                FrontendToClient::Snapshot {
                    world: id,
                    part,
                    snapshot,
                } if id == *watched => {
                    if let flotilla_wire::PartOutcome::Complete(whole) =
                        client.assembler.offer(part, snapshot).unwrap()
                    {
                        client.events.push(format!("SnapshotApplied {}", whole.seq));
                        client.replica.apply_snapshot(whole);
                        client.awaiting_snapshot = false;
                    }
                }
                FrontendToClient::ChangeBatch { world: id, batch } if id == *watched => {
                    if client.awaiting_snapshot {
                        continue;
                    }
                    let seq = batch.seq;
                    match client.replica.apply_batch(batch) {
                        Ok(flotilla_world::ApplyOutcome::Applied) => {
                            client.events.push(format!("BatchApplied {seq}"));
                        }
                        Ok(flotilla_world::ApplyOutcome::AlreadyHad) => {}
                        Err(_) => {
                            client.awaiting_snapshot = true;
                            client.assembler.reset();
                            client.events.push("Resyncing".to_owned());
                            client.replies.push(
                                ClientToFrontend::Subscribe {
                                    world: watched.clone(),
                                    since: None,
                                }
                                .encode_to_bytes()
                                .to_vec(),
                            );
                        }
                    }
                }
                FrontendToClient::Output { .. } => client.events.push("Output".to_owned()),
                FrontendToClient::Joined { .. } => client.events.push("Joined".to_owned()),
                FrontendToClient::Refused { .. } => client.events.push("Refused".to_owned()),
                FrontendToClient::Unsubscribed { .. } => {
                    client.events.push("Unsubscribed".to_owned());
                }
                FrontendToClient::Error { code, text } => {
                    client.fatal = Some((code.to_u16(), text));
                    break;
                }
                _ => {}
            }
        }
        client
    }
}

// ---------------------------------------------------------------------------------------
// The vectors
// ---------------------------------------------------------------------------------------

const WORLD_A: &str = "arena-1";
const EPOCH_A: u64 = 0xfedc_ba98_7654_3210; // above 2^53: needs BigInt in JS
const WELCOME_TOKEN_FILL: u8 = 0x5a;

/// Stream A: a welcome, a multi-part snapshot, batches (a duplicate, one removing an
/// absent key), a ping, a pong, an output, frames of a world not watched, and an error.
fn stream_a() -> Vec<u8> {
    let id = world(WORLD_A);
    let other = world("other");
    let history = make_history(EPOCH_A, 15, 11);
    let mut out = message(FrontendToClient::Welcome {
        version: 1,
        session_token: token(WELCOME_TOKEN_FILL),
        resumed: false,
        server_id: "fe-1".to_owned(),
    });
    out.extend(snapshot_frames(&id, &history.states[5], 160));
    out.extend(message(FrontendToClient::Ping {
        nonce: 0x0102_0304_0506_0708,
    }));
    for seq in 6..=15u64 {
        out.extend(batch_frame(&id, &history.batches[(seq - 1) as usize]));
        if seq == 9 {
            // A duplicate (a batch at or below the seq is ignored).
            out.extend(batch_frame(&id, &history.batches[7]));
            out.extend(message(FrontendToClient::Pong { nonce: 5 }));
            out.extend(message(FrontendToClient::Output {
                world: id.clone(),
                payload: Bytes::from_static(b"you are p/1"),
            }));
            // A join token accepted, an input and a token refused (not fatal).
            out.extend(message(FrontendToClient::Joined {
                world: id.clone(),
                role: flotilla_wire::Role::Observer,
                expires_unix: 1_900_000_000,
            }));
            out.extend(message(FrontendToClient::Refused {
                request: flotilla_wire::FrameType::Input,
                world: Some(id.clone()),
                code: ErrorCode::NotAllowed,
                text: "no player token for this world".to_owned(),
            }));
            out.extend(message(FrontendToClient::Refused {
                request: flotilla_wire::FrameType::Join,
                world: None,
                code: ErrorCode::NotAllowed,
                text: "not signed by a configured key".to_owned(),
            }));
        }
        if seq == 11 {
            // A world this client does not watch: ignored.
            out.extend(snapshot_frames(&other, &history.states[2], 1 << 20));
            out.extend(batch_frame(&other, &history.batches[2]));
            out.extend(message(FrontendToClient::Unsubscribed {
                world: other.clone(),
                code: ErrorCode::UnknownWorld,
                text: "no game server hosts this world".to_owned(),
            }));
        }
    }
    // A hand-made batch: removes an absent key and an existing one, upserts a new key.
    out.extend(batch_frame(
        &id,
        &ChangeBatch {
            epoch: EPOCH_A,
            seq: 16,
            upserts: vec![(Bytes::from_static(b"zz"), Bytes::from_static(b"1"))],
            removes: vec![Bytes::from_static(b"nope"), Bytes::from_static(b"a")],
        },
    ));
    out.extend(message(FrontendToClient::Error {
        code: ErrorCode::ShuttingDown,
        text: "front-end shutting down".to_owned(),
    }));
    out
}

const WORLD_B: &str = "arena-2";

/// Stream B: resyncs. A snapshot, a batch, stale snapshot parts, a gap (resubscribe, batches
/// ignored until the snapshot), a snapshot of another epoch, a duplicate, a batch of a third
/// epoch (resubscribe), its multi-part snapshot and two batches. Returns the stream and the
/// final state.
fn stream_b() -> (Vec<u8>, Snapshot) {
    let id = world(WORLD_B);
    let first = make_history(31, 8, 21);
    let second = make_history(32, 12, 22);
    let third = make_history(33, 14, 23);
    let mut out = message(FrontendToClient::Welcome {
        version: 1,
        session_token: token(1),
        resumed: true,
        server_id: "fe-2".to_owned(),
    });
    out.extend(snapshot_frames(&id, &first.states[3], 1 << 20));
    out.extend(batch_frame(&id, &first.batches[3])); // seq 4: applied
    // Leftover Middle and Last parts of an older snapshot: stale, ignored.
    let stale = snapshot_frames(&id, &first.states[2], 160);
    let mut decoder = Decoder::default();
    decoder.feed(&stale);
    let mut parts = Vec::new();
    while let Some(raw) = decoder.next_frame().unwrap() {
        parts.push(raw.as_bytes().to_vec());
    }
    assert!(
        parts.len() >= 3,
        "want a snapshot of 3+ parts, got {}",
        parts.len()
    );
    for part in &parts[1..] {
        out.extend(part);
    }
    out.extend(batch_frame(&id, &first.batches[5])); // seq 6: a gap, resync
    out.extend(batch_frame(&id, &first.batches[4])); // seq 5: ignored while resyncing
    out.extend(snapshot_frames(&id, &second.states[10], 1 << 20));
    out.extend(batch_frame(&id, &second.batches[10])); // seq 11
    out.extend(batch_frame(&id, &second.batches[10])); // duplicate
    out.extend(batch_frame(&id, &third.batches[12])); // epoch 33 seq 13: resync
    out.extend(snapshot_frames(&id, &third.states[12], 160));
    out.extend(batch_frame(&id, &third.batches[12])); // seq 13
    out.extend(batch_frame(&id, &third.batches[13])); // seq 14
    (out, third.states[14].clone())
}

/// The client frames the JS encodes, as JSON specs and as the Rust messages.
fn encode_cases() -> Vec<(Value, ClientToFrontend)> {
    let long_world = "w".repeat(255);
    vec![
        (
            json!({"type": "Hello", "token": null, "name": "c"}),
            ClientToFrontend::Hello {
                version: 1,
                session_token: None,
                client_name: "c".to_owned(),
            },
        ),
        (
            json!({"type": "Hello", "token": hex(&token(3)), "name": "flotilla-web"}),
            ClientToFrontend::Hello {
                version: 1,
                session_token: Some(token(3)),
                client_name: "flotilla-web".to_owned(),
            },
        ),
        (
            json!({"type": "Hello", "token": "", "name": "ü"}),
            ClientToFrontend::Hello {
                version: 1,
                session_token: Some(Bytes::new()),
                client_name: "ü".to_owned(),
            },
        ),
        (
            json!({"type": "Ping", "nonce": "1"}),
            ClientToFrontend::Ping { nonce: 1 },
        ),
        (
            json!({"type": "Ping", "nonce": u64::MAX.to_string()}),
            ClientToFrontend::Ping { nonce: u64::MAX },
        ),
        (
            json!({"type": "Pong", "nonce": "0"}),
            ClientToFrontend::Pong { nonce: 0 },
        ),
        (
            json!({"type": "Pong", "nonce": 0x0102_0304_0506_0708_u64.to_string()}),
            ClientToFrontend::Pong {
                nonce: 0x0102_0304_0506_0708,
            },
        ),
        (
            json!({"type": "Subscribe", "world": "$directory", "since": null}),
            ClientToFrontend::Subscribe {
                world: WorldId::DIRECTORY,
                since: None,
            },
        ),
        (
            json!({"type": "Subscribe", "world": "arena-1", "since": {"epoch": "7", "seq": "300"}}),
            ClientToFrontend::Subscribe {
                world: world("arena-1"),
                since: Some(Position { epoch: 7, seq: 300 }),
            },
        ),
        (
            json!({"type": "Subscribe", "world": "wörld ✓",
                   "since": {"epoch": u64::MAX.to_string(), "seq": u64::MAX.to_string()}}),
            ClientToFrontend::Subscribe {
                world: world("wörld ✓"),
                since: Some(Position {
                    epoch: u64::MAX,
                    seq: u64::MAX,
                }),
            },
        ),
        (
            json!({"type": "Subscribe", "world": long_world,
                   "since": {"epoch": "0", "seq": ((1u64 << 53) + 1).to_string()}}),
            ClientToFrontend::Subscribe {
                world: world(&long_world),
                since: Some(Position {
                    epoch: 0,
                    seq: (1 << 53) + 1,
                }),
            },
        ),
        (
            json!({"type": "Unsubscribe", "world": "arena-1"}),
            ClientToFrontend::Unsubscribe {
                world: world("arena-1"),
            },
        ),
        (
            json!({"type": "Input", "world": "arena-1", "payload": "4a"}),
            ClientToFrontend::Input {
                world: world("arena-1"),
                payload: Bytes::from_static(b"J"),
            },
        ),
        (
            json!({"type": "Input", "world": "arena-1", "payload": "530a0a"}),
            ClientToFrontend::Input {
                world: world("arena-1"),
                payload: Bytes::from_static(&[0x53, 0x0a, 0x0a]),
            },
        ),
        (
            json!({"type": "Input", "world": "a", "payload": hex(&[7u8; 300])}),
            ClientToFrontend::Input {
                world: world("a"),
                payload: Bytes::from(vec![7u8; 300]),
            },
        ),
        (
            json!({"type": "Join", "join": hex(&[1u8, 2, 3, 0xfe, 0xff])}),
            ClientToFrontend::Join {
                token: Bytes::from_static(&[1, 2, 3, 0xfe, 0xff]),
            },
        ),
        (
            json!({"type": "Error", "code": 7, "text": "nothing received for 1.5 s"}),
            ClientToFrontend::Error {
                code: ErrorCode::Timeout,
                text: "nothing received for 1.5 s".to_owned(),
            },
        ),
        (
            json!({"type": "Error", "code": 65535, "text": ""}),
            ClientToFrontend::Error {
                code: ErrorCode::Other(65535),
                text: String::new(),
            },
        ),
    ]
}

/// Keys and values of a world to digest, in any order (a repeated key: the last wins).
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Worlds to digest: PROTOCOL.md's test values, then generated ones (binary keys,
/// prefixes, empty keys and values, a 100 KB value, extreme positions). Returns the JSON
/// case (entries shuffled: the JS replica must sort them) and the Rust digest.
fn digest_cases() -> Vec<(Value, String)> {
    let mut rng = Rng(99);
    let mut worlds: Vec<(u64, u64, Entries)> = vec![
        (0, 0, vec![]),
        (7, 0, vec![]),
        (7, 1, vec![(b"player/1".to_vec(), b"x=3,y=4".to_vec())]),
        (
            7,
            2,
            vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), vec![])],
        ),
        (
            u64::MAX,
            u64::MAX,
            vec![
                (vec![], b"empty key".to_vec()),
                (vec![0x00], vec![]),
                (vec![0xff], vec![0xff; 3]),
                (vec![0xff, 0x00], vec![1]),
                (vec![0x7f], vec![2]),
                (vec![0x80], vec![3]),
                (b"a".to_vec(), vec![4]),
                (b"ab".to_vec(), vec![5]),
                (b"aa".to_vec(), vec![6]),
                ("é".as_bytes().to_vec(), vec![7]),
                (b"big".to_vec(), rng.bytes(100_000)),
            ],
        ),
    ];
    for round in 0..6u64 {
        let count = rng.below(60) as usize;
        let entries = (0..count)
            .map(|_| {
                let key_len = rng.below(6) as usize;
                let value_len = rng.below(40) as usize;
                (rng.bytes(key_len), rng.bytes(value_len))
            })
            .collect();
        worlds.push((rng.next(), rng.next() >> (round * 10), entries));
    }
    worlds
        .into_iter()
        .map(|(epoch, seq, entries)| {
            // The Rust side: unique keys (last wins), sorted.
            let unique: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
                entries.iter().cloned().collect();
            let digest = flotilla_world::digest_entries(epoch, seq, unique.iter());
            let mut shuffled: Vec<Value> = Vec::new();
            let mut order: Vec<usize> = (0..entries.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            // Keep the last value of a repeated key last (the JS replica, like Rust's, lets
            // the last one win): list the shuffled entries, then every entry once more in
            // its original order.
            for &i in &order {
                shuffled.push(json!([hex(&entries[i].0), hex(&entries[i].1)]));
            }
            for (key, value) in &entries {
                shuffled.push(json!([hex(key), hex(value)]));
            }
            (
                json!({"epoch": epoch.to_string(), "seq": seq.to_string(), "entries": shuffled,
                       "len": unique.len()}),
                format!("{digest:016x}"),
            )
        })
        .collect()
}

/// Malformed (and a few good) frames from a front-end, with the error code the Rust
/// decoder gives (0: decoded fine; -1: incomplete).
fn malformed_cases() -> Vec<(String, Vec<u8>)> {
    let welcome_body = |version: &[u8], flag: u8, server: &[u8]| {
        let mut body = version.to_vec();
        body.extend([40]);
        body.extend(token(0));
        body.push(flag);
        body.push(u8::try_from(server.len()).unwrap());
        body.extend(server);
        body
    };
    let snapshot_body = |world_id: &[u8], part: u8, count: u8| {
        let mut body = vec![u8::try_from(world_id.len()).unwrap_or(0)];
        if world_id.len() > 127 {
            body = vec![(world_id.len() as u8) | 0x80, (world_id.len() >> 7) as u8];
        }
        body.extend(world_id);
        body.extend(7u64.to_be_bytes());
        body.push(1);
        body.push(part);
        body.push(count);
        body
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "good welcome",
            raw_frame(0x02, &welcome_body(&[1], 1, b"fe")),
        ),
        ("header incomplete", vec![0, 0, 0]),
        ("body incomplete", raw_frame(0x03, &[0; 8])[..9].to_vec()),
        ("length 0", vec![0, 0, 0, 0, 0x03]),
        ("length over 1 MiB", {
            let mut frame = ((1u32 << 20) + 1).to_be_bytes().to_vec();
            frame.push(0x12);
            frame
        }),
        ("unassigned type 0x00", raw_frame(0x00, &[])),
        ("unassigned type 0x06", raw_frame(0x06, &[1, 2])),
        ("unassigned type 0x0f", raw_frame(0x0f, &[])),
        ("unassigned type 0xff", raw_frame(0xff, &[])),
        (
            "client Hello",
            ClientToFrontend::Hello {
                version: 1,
                session_token: None,
                client_name: "c".into(),
            }
            .encode_to_bytes()
            .to_vec(),
        ),
        (
            "client Subscribe",
            ClientToFrontend::Subscribe {
                world: world("x"),
                since: None,
            }
            .encode_to_bytes()
            .to_vec(),
        ),
        (
            "game welcome",
            GameToFrontend::Welcome {
                version: 1,
                server_id: "g".into(),
            }
            .encode_to_bytes()
            .to_vec(),
        ),
        (
            "session moved",
            GameToFrontend::SessionMoved {
                session: flotilla_wire::SessionId(5),
            }
            .encode_to_bytes()
            .to_vec(),
        ),
        ("ping truncated", raw_frame(0x03, &[0; 7])),
        ("ping trailing byte", raw_frame(0x03, &[0; 9])),
        ("empty ping", raw_frame(0x03, &[])),
        (
            "welcome non-minimal varint",
            raw_frame(0x02, &welcome_body(&[0x81, 0x00], 0, b"fe")),
        ),
        (
            "welcome version 2^32",
            raw_frame(
                0x02,
                &welcome_body(&[0x80, 0x80, 0x80, 0x80, 0x10], 0, b"fe"),
            ),
        ),
        (
            "welcome version 11-byte varint",
            raw_frame(
                0x02,
                &welcome_body(
                    &[0x80; 10].iter().copied().chain([1]).collect::<Vec<u8>>(),
                    0,
                    b"fe",
                ),
            ),
        ),
        (
            "welcome flag 2",
            raw_frame(0x02, &welcome_body(&[1], 2, b"fe")),
        ),
        (
            "welcome invalid UTF-8",
            raw_frame(0x02, &welcome_body(&[1], 0, &[0xc3, 0x28])),
        ),
        (
            "welcome BOM kept",
            raw_frame(0x02, &welcome_body(&[1], 0, "\u{feff}fe".as_bytes())),
        ),
        (
            "snapshot part tag 4",
            raw_frame(0x12, &snapshot_body(b"w", 4, 0)),
        ),
        (
            "snapshot empty world id",
            raw_frame(0x12, &snapshot_body(b"", 3, 0)),
        ),
        (
            "snapshot 256-byte world id",
            raw_frame(0x12, &snapshot_body(&[b'w'; 256], 3, 0)),
        ),
        (
            "snapshot 255-byte world id",
            raw_frame(0x12, &snapshot_body(&[b'w'; 255], 3, 0)),
        ),
        (
            "snapshot count lies",
            raw_frame(0x12, &snapshot_body(b"w", 3, 100)),
        ),
        (
            "snapshot world not UTF-8",
            raw_frame(0x12, &snapshot_body(&[0xff], 3, 0)),
        ),
        ("error code 65536", raw_frame(0x05, &[0x80, 0x80, 0x04, 0])),
        (
            "error code 65535",
            raw_frame(0x05, &[0xff, 0xff, 0x03, 1, b'x']),
        ),
        (
            "error varint 10th byte 2",
            raw_frame(
                0x05,
                &[
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0,
                ],
            ),
        ),
        ("batch removes count lies", {
            let mut body = vec![1, b'w'];
            body.extend(7u64.to_be_bytes());
            body.extend([1, 0, 5]);
            raw_frame(0x13, &body)
        }),
        ("batch seq 2^64-1", {
            let mut body = vec![1, b'w'];
            body.extend(7u64.to_be_bytes());
            body.extend([
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0,
            ]);
            raw_frame(0x13, &body)
        }),
        ("batch seq 2^64", {
            let mut body = vec![1, b'w'];
            body.extend(7u64.to_be_bytes());
            body.extend([
                0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0, 0,
            ]);
            raw_frame(0x13, &body)
        }),
        (
            "unsubscribed",
            message(FrontendToClient::Unsubscribed {
                world: world("w"),
                code: ErrorCode::Unavailable,
                text: "game server unavailable".into(),
            }),
        ),
        (
            "output",
            message(FrontendToClient::Output {
                world: world("w"),
                payload: Bytes::from_static(b"you are p/7"),
            }),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect()
}

/// What the Rust decoder makes of one front-end frame: 0 (fine, with the welcome's server
/// id if any), -1 (incomplete) or the error code.
fn rust_decode_outcome(bytes: &[u8]) -> (i64, Option<String>) {
    let mut decoder = Decoder::new(DEFAULT_MAX_FRAME_LEN);
    decoder.feed(bytes);
    match decoder.next_frame() {
        Ok(None) => (-1, None),
        Err(error) => (i64::from(error.code().to_u16()), None),
        Ok(Some(raw)) => match FrontendToClient::decode(&raw) {
            Ok(FrontendToClient::Welcome { server_id, .. }) => (0, Some(server_id)),
            Ok(_) => (0, None),
            Err(error) => (i64::from(error.code().to_u16()), None),
        },
    }
}

// The observer flow (see the JS `observerFlow`): the world, its history and the frames
// the fake front-ends send.
const WORLD_O: &str = "arena-3";
const EPOCH_O: u64 = 0x8000_0000_0000_0001;
const EPOCH_O2: u64 = 77;

struct ObserverVectors {
    json: Value,
    history: History,
    history2: History,
}

fn observer_vectors() -> ObserverVectors {
    let id = world(WORLD_O);
    let history = make_history(EPOCH_O, 40, 5);
    let history2 = make_history(EPOCH_O2, 5, 6);
    let batches: Vec<String> = history
        .batches
        .iter()
        .map(|batch| hex(&batch_frame(&id, batch)))
        .collect();
    let json = json!({
        "world": WORLD_O,
        "frontends": ["ws://fe-a.test/ws", "ws://fe-b.test/ws", "ws://fe-c.test/ws"],
        "welcome1": hex(&message(FrontendToClient::Welcome {
            version: 1, session_token: token(0x11), resumed: false, server_id: "fe-a".into(),
        })),
        "welcome2": hex(&message(FrontendToClient::Welcome {
            version: 1, session_token: token(0x11), resumed: true, server_id: "fe-c".into(),
        })),
        "welcome3": hex(&message(FrontendToClient::Welcome {
            version: 1, session_token: token(0x22), resumed: false, server_id: "fe-x".into(),
        })),
        "snapshot20": hex(&snapshot_frames(&id, &history.states[20], 160)),
        "snapshot35": hex(&snapshot_frames(&id, &history.states[35], 1 << 20)),
        "snapshotE2": hex(&snapshot_frames(&id, &history2.states[5], 1 << 20)),
        "batches": batches, // batches[i] brings the world to seq i + 1
        "pong1": hex(&message(FrontendToClient::Pong { nonce: 1 })),
        "ping42": hex(&message(FrontendToClient::Ping { nonce: 42 })),
        "unavailable": hex(&message(FrontendToClient::Unsubscribed {
            world: id.clone(), code: ErrorCode::Unavailable, text: "game server unavailable".into(),
        })),
        "unknown": hex(&message(FrontendToClient::Unsubscribed {
            world: id.clone(), code: ErrorCode::UnknownWorld, text: "no game server hosts this world".into(),
        })),
        "shutting": hex(&message(FrontendToClient::Error {
            code: ErrorCode::ShuttingDown, text: "shutting down".into(),
        })),
        "moved": hex(&message(FrontendToClient::Error {
            code: ErrorCode::SessionMoved, text: "session resumed on another connection".into(),
        })),
    });
    ObserverVectors {
        json,
        history,
        history2,
    }
}

/// Draw sequences for `randomIndexFrom`, with the index and the draws used that rejection
/// sampling must give.
fn random_index_cases() -> Vec<(Value, (u64, usize))> {
    let cases: Vec<(u64, Vec<u64>)> = vec![
        (1, vec![]),
        (2, vec![0xffff_ffff]),
        (3, vec![0xffff_ffff, 0xffff_fffe]),
        (
            6,
            vec![
                0xffff_fffc,
                0xffff_fffd,
                0xffff_fffe,
                0xffff_ffff,
                0xffff_fffb,
            ],
        ),
        (7, vec![0xffff_fffc, 11]),
        (1000, vec![4_294_967_000, 4_294_967_295, 4_294_966_999]),
        (0x1_0000_0000, vec![123_456_789]),
    ];
    cases
        .into_iter()
        .map(|(n, draws)| {
            // The rule: accept x < floor(2^32 / n) * n, answer x % n.
            let limit = (1u64 << 32) / n * n;
            let mut used = 0;
            let mut value = 0;
            if n > 1 {
                for &x in &draws {
                    used += 1;
                    if x < limit {
                        value = x % n;
                        break;
                    }
                }
            }
            (json!({"n": n, "draws": draws}), (value, used))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The test page
// ---------------------------------------------------------------------------------------

/// The page's script: runs every check on load, synchronously, and writes the results into
/// `#result` (as hex of UTF-8 JSON, so nothing needs escaping) and a few readable elements.
const HARNESS: &str = r##"
"use strict";
const result = { uncaught: [] };
window.addEventListener("error", (event) => result.uncaught.push(String(event.message)));

function u64s(value) { return typeof value === "bigint" ? value.toString() : value; }

/** A xorshift32 generator for chunk sizes (deterministic per seed). */
function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
}

/** The bytes cut into ArrayBuffers (as WebSocket messages arrive): random sizes from 0 to
 *  max for a seed, or one chunk, or one byte each. */
function chunk(bytes, how) {
  const out = [];
  if (how === "whole") return [bytes.slice().buffer];
  if (how === "bytes") { for (let i = 0; i < bytes.length; i++) out.push(bytes.slice(i, i + 1).buffer); return out; }
  const next = xorshift(how);
  const max = 1 + (how % 3 === 0 ? 7 : how % 3 === 1 ? 64 : 700);
  for (let i = 0; i < bytes.length;) {
    const n = Math.min(bytes.length - i, next() % (max + 1));
    out.push(bytes.slice(i, i + n).buffer);
    i += n;
  }
  return out;
}

/** Feeds a stream to a Decoder and a Session watching `world`, like the observer does. */
function runStream(bytes, world, how) {
  const F = Flotilla;
  const decoder = new F.Decoder();
  const session = new F.Session({ random: { index: () => 0, float: () => 0 } });
  session.subscribe(world, null);
  const out = { types: [], replies: [], events: [], welcome: null, fatal: null };
  feeding: for (const piece of chunk(bytes, how)) {
    decoder.feed(piece);
    let frame;
    while ((frame = decoder.nextFrame()) !== null) {
      out.types.push(F.frameTypeName(frame.type));
      const message = F.decodeFrontendToClient(frame);
      if (out.welcome === null) {
        const welcomed = session.onHandshake(message);
        out.welcome = { version: message.version, token: F.toHex(welcomed.sessionToken),
                        resumed: welcomed.resumed, serverId: welcomed.serverId,
                        sessionId: u64s(session.sessionId()) };
        continue;
      }
      let handled;
      try {
        handled = session.handle(message, 0);
      } catch (error) {
        if (!(error instanceof F.Fatal)) throw error;
        out.fatal = { kind: error.kind, code: error.code, text: error.text };
        break feeding;
      }
      for (const reply of handled.replies) out.replies.push(F.toHex(F.encodeClientMessage(reply)));
      for (const event of handled.events) {
        out.events.push(event.position ? `${event.type} ${event.position.seq}` : event.type);
      }
    }
  }
  const replica = session.replica(world);
  out.epoch = u64s(replica.epoch);
  out.seq = u64s(replica.seq);
  out.entries = replica.size;
  out.digest = replica.digestHex();
  out.digestBigInt = F.digestHex(F.digestEntriesBigInt(replica.epoch, replica.seq, replica.sortedEntries()));
  return out;
}

/** The same stream in many chunkings: every run must agree with the first. */
function streamCase(hex, world) {
  const bytes = Flotilla.fromHex(hex);
  const hows = ["whole", "bytes", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
  const runs = hows.map((how) => runStream(bytes, world, how));
  const first = JSON.stringify(runs[0]);
  return { result: runs[0], disagreeing: hows.filter((how, i) => JSON.stringify(runs[i]) !== first).map(String) };
}

function encodeCase(spec) {
  const F = Flotilla;
  const m = Object.assign({}, spec);
  if (spec.type === "Hello") {
    m.sessionToken = spec.token === null ? null : F.fromHex(spec.token);
    m.clientName = spec.name;
  }
  if (spec.nonce !== undefined) m.nonce = BigInt(spec.nonce);
  if (spec.since) m.since = { epoch: BigInt(spec.since.epoch), seq: BigInt(spec.since.seq) };
  if (spec.payload !== undefined) m.payload = F.fromHex(spec.payload);
  if (spec.join !== undefined) m.token = F.fromHex(spec.join);
  return F.toHex(F.encodeClientMessage(m));
}

function digestCase(spec) {
  const F = Flotilla;
  const replica = new F.Replica();
  replica.applySnapshot({ epoch: BigInt(spec.epoch), seq: BigInt(spec.seq),
                          entries: spec.entries.map(([k, v]) => [F.fromHex(k), F.fromHex(v)]) });
  return { fast: replica.digestHex(), bigint: F.digestHex(F.digestEntriesBigInt(replica.epoch, replica.seq, replica.sortedEntries())),
           direct: F.digestHex(F.digestEntries(BigInt(spec.epoch), BigInt(spec.seq), replica.sortedEntries())),
           len: replica.size };
}

function malformedCase(hex) {
  const F = Flotilla;
  const decoder = new F.Decoder();
  decoder.feed(F.fromHex(hex));
  try {
    const frame = decoder.nextFrame();
    if (frame === null) return { code: -1 };
    const message = F.decodeFrontendToClient(frame);
    return { code: 0, serverId: message.type === "Welcome" ? message.serverId : null };
  } catch (error) {
    if (!(error instanceof F.WireError)) throw error;
    return { code: error.code, message: error.message };
  }
}

/** A manual clock: timers run only in advance(), in order. */
class FakeClock {
  constructor() { this.t = 0; this.timers = []; this.nextId = 1; }
  now() { return this.t; }
  setTimeout(fn, ms) { const id = this.nextId++; this.timers.push({ id, at: this.t + Math.max(0, ms), fn }); return id; }
  clearTimeout(id) { this.timers = this.timers.filter((timer) => timer.id !== id); }
  advance(ms) {
    const target = this.t + ms;
    for (let fired = 0; ; fired++) {
      if (fired > 10000) throw new Error(`runaway timers at t=${this.t}: a deadline that never moves`);
      let due = null;
      for (const timer of this.timers) if (timer.at <= target && (due === null || timer.at < due.at)) due = timer;
      if (due === null) break;
      this.timers = this.timers.filter((timer) => timer !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = target;
  }
}

/** The observer flow: fake front-ends over a fake WebSocket, a fake clock. */
function observerFlow(V) {
  const F = Flotilla;
  const clock = new FakeClock();
  const sockets = [];
  class FakeWebSocket {
    constructor(url) { this.url = url; this.sent = []; this.closed = false; this.createdAt = clock.t; sockets.push(this); }
    send(bytes) { this.sent.push({ t: clock.t, hex: F.toHex(F.asBytes(bytes)) }); }
    close() { this.closed = true; }
    open() { this.onopen && this.onopen({}); }
    receive(hex) { this.onmessage && this.onmessage({ data: F.fromHex(hex).buffer }); }
    fail() { this.onclose && this.onclose({ code: 1006, reason: "" }); }
  }
  // A quiet-side ping every 2 s (the default is 20 s), so the flow shows one.
  const observer = new F.Observer({ frontends: V.frontends, world: V.world, WebSocket: FakeWebSocket, clock, quietPingMs: 2000 });
  const checkpoints = [];
  const check = (label) => {
    const replica = observer.replica();
    const position = replica ? replica.position() : null;
    checkpoints.push({ label, t: clock.t, status: observer.status, frontend: observer.frontend,
                       switches: observer.switches, reconnects: observer.reconnects,
                       session: observer.hasSession() ? "yes" : "no",
                       epoch: position ? u64s(position.epoch) : "", seq: position ? u64s(position.seq) : "",
                       digest: replica ? replica.digestHex() : "", entries: replica ? replica.size : 0,
                       sockets: sockets.length, error: observer.lastError, timers: clock.timers.length });
  };
  const last = () => sockets[sockets.length - 1];
  const batch = (seq) => V.batches[seq - 1];

  observer.start();
  check("start");
  last().open();
  last().receive(V.welcome1);
  check("welcomed");
  // The snapshot and five batches in one message, the sixth split across two.
  const b26 = batch(26);
  last().receive(V.snapshot20 + batch(21) + batch(22) + batch(23) + batch(24) + batch(25) + b26.slice(0, 20));
  last().receive(b26.slice(20));
  check("live");
  clock.advance(499);
  check("quiet 499");
  clock.advance(1); // t=500: the probe
  clock.advance(100);
  last().receive(V.pong1); // t=600
  clock.advance(100);
  last().receive(V.ping42); // t=700: answered
  clock.advance(1800); // t=2500: a probe at 1200, silence since 700: given up at 2200
  check("silent");
  clock.advance(100);
  last().fail(); // t=2600: the second front-end refuses
  check("refused");
  clock.advance(100);
  last().open(); // t=2700: the third one
  last().receive(V.welcome2);
  check("resumed");
  for (let seq = 27; seq <= 33; seq++) {
    clock.advance(100 + (seq === 27 ? 0 : 300)); // 2800, 3200, ..., 5200
    last().receive(batch(seq));
  }
  check("streaming");
  clock.advance(100);
  last().receive(batch(35)); // t=5300: a gap
  check("gap");
  last().receive(V.snapshot35);
  check("resynced");
  clock.advance(100);
  last().receive(V.unavailable); // t=5400
  check("waiting");
  clock.advance(100); // t=5500: resubscribed
  last().receive(batch(36));
  check("back");
  clock.advance(100);
  last().receive(V.shutting); // t=5600: every front-end failed in this round
  check("backoff");
  clock.advance(500); // t=6100
  check("after backoff");
  last().open();
  last().receive(V.welcome3); // a new session
  last().receive(V.snapshotE2); // the world restarted
  check("new session");
  clock.advance(100);
  last().receive(V.moved); // t=6200
  last().open();
  check("moved");
  observer.stop();
  check("stopped");

  // Another observer, one front-end, a world it never served: the watch ends, and the
  // page asks again 5 s later.
  const lone = new F.Observer({ frontends: [V.frontends[0]], world: V.world, WebSocket: FakeWebSocket, clock });
  const start = clock.t;
  lone.start();
  last().open();
  last().receive(V.welcome1);
  last().receive(V.unknown);
  const unknown = { status: lone.status, error: lone.lastError };
  const before = last().sent.length;
  for (let i = 0; i < 14; i++) {
    clock.advance(400); // the front-end stays heard from (pongs)
    last().receive(V.pong1);
  }
  const retry = last().sent.slice(before).map((s) => ({ t: s.t - start, hex: s.hex }));
  lone.stop();
  return {
    checkpoints,
    sockets: sockets.slice(0, 5).map((s) => ({ url: s.url, createdAt: s.createdAt, closed: s.closed, sent: s.sent })),
    unknown,
    retry,
  };
}

function run() {
  const F = Flotilla;
  result.streamA = streamCase(VECTORS.streamA, VECTORS.worldA);
  result.streamB = streamCase(VECTORS.streamB, VECTORS.worldB);
  result.encoded = VECTORS.encode.map(encodeCase);
  result.digests = VECTORS.digests.map(digestCase);
  result.malformed = VECTORS.malformed.map((c) => malformedCase(c.hex));
  result.randomIndex = VECTORS.randomIndex.map(({ n, draws }) => {
    let used = 0;
    const value = F.randomIndexFrom(n, () => { if (used >= draws.length) throw new Error("out of draws"); return draws[used++]; });
    return { value, used };
  });
  const counts = [0, 0, 0];
  let floatMin = 1, floatMax = 0;
  for (let i = 0; i < 30000; i++) {
    counts[F.cryptoRandom.index(3)]++;
    const x = F.cryptoRandom.float();
    floatMin = Math.min(floatMin, x);
    floatMax = Math.max(floatMax, x);
  }
  result.uniform = { counts, floatMin, floatMax };
  result.observer = observerFlow(VECTORS.observer);
}

try {
  if (typeof Flotilla === "undefined") throw new Error("flotilla.js did not load (Flotilla is undefined)");
  run();
} catch (error) {
  result.error = String(error && error.stack ? error.stack : error);
}
const json = JSON.stringify(result);
document.getElementById("result").textContent = Flotilla.toHex(new TextEncoder().encode(json));
if (result.streamA) {
  document.getElementById("js-digest").textContent = result.streamA.result.digest;
  document.getElementById("js-epoch").textContent = result.streamA.result.epoch;
  document.getElementById("js-seq").textContent = result.streamA.result.seq;
  document.getElementById("js-types").textContent = result.streamA.result.types.join(" ");
  document.getElementById("js-encoded").textContent = result.encoded.join(" ");
}
"##;

/// Writes the test page (and a copy of flotilla.js) into `dir`; returns its file:// URL.
fn write_page(dir: &Path, vectors: &Value) -> String {
    std::fs::copy(web_dir().join("flotilla.js"), dir.join("flotilla.js")).unwrap();
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>flotilla.js test</title></head><body>\n\
         <pre id=\"js-digest\"></pre><pre id=\"js-epoch\"></pre><pre id=\"js-seq\"></pre>\n\
         <pre id=\"js-types\"></pre><pre id=\"js-encoded\"></pre>\n\
         <pre id=\"result\">not run</pre>\n\
         <script src=\"flotilla.js\"></script>\n\
         <script>const VECTORS = {vectors};</script>\n\
         <script>{HARNESS}</script>\n</body></html>\n"
    );
    let path = dir.join("test.html");
    std::fs::write(&path, page).unwrap();
    format!("file://{}", path.display())
}

/// Decodes a frame the JS sent, as the front-end would.
fn client_frame(hex_text: &str) -> ClientToFrontend {
    let bytes = Bytes::from(unhex(hex_text));
    let raw = RawFrame::parse(bytes, flotilla_wire::CLIENT_MAX_FRAME_LEN)
        .unwrap_or_else(|e| panic!("the JS frame {hex_text} does not parse: {e}"));
    ClientToFrontend::decode(&raw)
        .unwrap_or_else(|e| panic!("the JS frame {hex_text} does not decode: {e}"))
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {value}"))
}

/// The frames one fake socket received from the JS: (time in ms, message).
fn sent(socket: &Value) -> Vec<(f64, ClientToFrontend)> {
    socket["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["t"].as_f64().unwrap(), client_frame(str_of(s, "hex"))))
        .collect()
}

fn hello(token: Option<Bytes>) -> ClientToFrontend {
    ClientToFrontend::Hello {
        version: 1,
        session_token: token,
        client_name: "flotilla-web".to_owned(),
    }
}

fn subscribe(since: Option<(u64, u64)>) -> ClientToFrontend {
    ClientToFrontend::Subscribe {
        world: world(WORLD_O),
        since: since.map(|(epoch, seq)| Position { epoch, seq }),
    }
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

#[test]
fn flotilla_js_matches_the_rust_crates() {
    let stream_a = stream_a();
    let (stream_b, final_b) = stream_b();
    let encode = encode_cases();
    let digests = digest_cases();
    let malformed = malformed_cases();
    let observer = observer_vectors();
    let random = random_index_cases();
    let vectors = json!({
        "worldA": WORLD_A,
        "streamA": hex(&stream_a),
        "worldB": WORLD_B,
        "streamB": hex(&stream_b),
        "encode": encode.iter().map(|(spec, _)| spec.clone()).collect::<Vec<_>>(),
        "digests": digests.iter().map(|(spec, _)| spec.clone()).collect::<Vec<_>>(),
        "malformed": malformed.iter().map(|(name, bytes)| json!({"name": name, "hex": hex(bytes)})).collect::<Vec<_>>(),
        "observer": observer.json,
        "randomIndex": random.iter().map(|(spec, _)| spec.clone()).collect::<Vec<_>>(),
    });

    let dir = tempfile::Builder::new()
        .prefix("flotilla-web-js-")
        .tempdir()
        .unwrap();
    let url = write_page(dir.path(), &vectors);
    let dump = dump_dom(&url, Duration::ZERO);
    let errors = script_errors(&dump.console);
    assert!(
        errors.is_empty(),
        "script errors in the test page:\n{}",
        errors.join("\n")
    );
    let encoded = element_text(&dump.dom, "result").expect("no #result in the dumped DOM");
    assert_ne!(encoded, "not run", "the test page's script did not run");
    let result: Value = serde_json::from_slice(&unhex(encoded.trim())).unwrap();
    assert!(
        result.get("error").is_none(),
        "the test page failed: {}",
        result["error"]
    );
    assert_eq!(
        result["uncaught"],
        json!([]),
        "uncaught errors in the test page"
    );

    // --- stream A: decoding, the replica, the digest, the replies ------------------------
    let expected = RustClient::run(&stream_a, &world(WORLD_A));
    let a = &result["streamA"];
    assert_eq!(
        a["disagreeing"],
        json!([]),
        "chunkings that changed the outcome"
    );
    let a = &a["result"];
    assert_eq!(a["types"], json!(expected.types), "decoded frame types");
    assert_eq!(str_of(a, "epoch"), EPOCH_A.to_string());
    assert_eq!(str_of(a, "seq"), expected.replica.seq().to_string());
    assert_eq!(expected.replica.seq(), 16);
    assert_eq!(a["entries"], json!(expected.replica.len()));
    let digest = format!("{:016x}", expected.replica.digest());
    assert_eq!(str_of(a, "digest"), digest, "the JS replica's digest");
    assert_eq!(
        str_of(a, "digestBigInt"),
        digest,
        "the BigInt reference digest"
    );
    assert_eq!(
        element_text(&dump.dom, "js-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        a["replies"],
        json!(expected.replies.iter().map(|r| hex(r)).collect::<Vec<_>>()),
        "the pong to the ping"
    );
    assert_eq!(
        client_frame(a["replies"][0].as_str().unwrap()),
        ClientToFrontend::Pong {
            nonce: 0x0102_0304_0506_0708
        }
    );
    let events: Vec<String> = a["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    // Snapshots and batches applied, the output, and the `Unsubscribed` of a world not
    // watched (reported and ignored, as the Rust session does).
    assert_eq!(events, expected.events);
    assert!(events.contains(&"Output".to_owned()) && events.contains(&"Unsubscribed".to_owned()));
    assert_eq!(
        a["fatal"],
        json!({"kind": "Peer", "code": 8, "text": "front-end shutting down"})
    );
    assert_eq!(
        expected.fatal,
        Some((8, "front-end shutting down".to_owned()))
    );
    let Some(FrontendToClient::Welcome {
        session_token,
        server_id,
        ..
    }) = &expected.welcome
    else {
        panic!("no welcome")
    };
    assert_eq!(
        a["welcome"],
        json!({"version": 1, "token": hex(session_token), "resumed": false, "serverId": server_id,
               "sessionId": u64::from_be_bytes(session_token[..8].try_into().unwrap()).to_string()})
    );

    // --- stream B: resyncs ---------------------------------------------------------------
    let expected = RustClient::run(&stream_b, &world(WORLD_B));
    let b = &result["streamB"];
    assert_eq!(b["disagreeing"], json!([]));
    let b = &b["result"];
    assert_eq!(b["types"], json!(expected.types));
    assert_eq!(
        (expected.replica.epoch(), expected.replica.seq()),
        (final_b.epoch, final_b.seq)
    );
    assert_eq!(expected.replica.digest(), final_b.digest());
    assert_eq!(str_of(b, "epoch"), final_b.epoch.to_string());
    assert_eq!(str_of(b, "seq"), final_b.seq.to_string());
    assert_eq!(str_of(b, "digest"), format!("{:016x}", final_b.digest()));
    assert_eq!(b["entries"], json!(final_b.entries.len()));
    let resubscribe = hex(&ClientToFrontend::Subscribe {
        world: world(WORLD_B),
        since: None,
    }
    .encode_to_bytes());
    assert_eq!(b["replies"], json!([resubscribe.clone(), resubscribe]));
    assert_eq!(
        b["events"],
        json!([
            "SnapshotApplied 3",
            "BatchApplied 4",
            "Resyncing",
            "SnapshotApplied 10",
            "BatchApplied 11",
            "Resyncing",
            "SnapshotApplied 12",
            "BatchApplied 13",
            "BatchApplied 14"
        ])
    );
    assert_eq!(
        b["events"],
        json!(
            expected
                .events
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(b["fatal"], Value::Null);

    // --- the client's frames, encoded by the JS -------------------------------------------
    for (index, (spec, message)) in encode.iter().enumerate() {
        let js = result["encoded"][index].as_str().unwrap();
        assert_eq!(
            js,
            hex(&message.encode_to_bytes()),
            "JS encoding of {spec} differs from Rust's"
        );
        assert_eq!(&client_frame(js), message, "the JS frame of {spec}");
    }
    // PROTOCOL.md section 1's examples, byte for byte.
    assert_eq!(result["encoded"][0], json!("0000000901464c544c01000163"));
    assert_eq!(result["encoded"][3], json!("00000009030000000000000001"));
    assert_eq!(
        result["encoded"][7],
        json!("0000000d100a246469726563746f727900")
    );
    assert_eq!(
        result["encoded"][8],
        json!("0000001410076172656e612d31010000000000000007ac02")
    );
    assert_eq!(
        result["encoded"][12],
        json!("0000000b14076172656e612d31014a")
    );
    assert_eq!(
        element_text(&dump.dom, "js-encoded")
            .unwrap()
            .split(' ')
            .count(),
        encode.len()
    );

    // --- digests ---------------------------------------------------------------------------
    for (index, (spec, digest)) in digests.iter().enumerate() {
        let js = &result["digests"][index];
        assert_eq!(str_of(js, "fast"), digest, "digest of {}", spec["epoch"]);
        assert_eq!(str_of(js, "bigint"), digest);
        assert_eq!(str_of(js, "direct"), digest);
        assert_eq!(js["len"], spec["len"]);
    }
    // PROTOCOL.md section 10's test values.
    let table = [
        "4c7b991dc5706b8f",
        "3de5f87b978b02e8",
        "8c95906ab8aff3d2",
        "3e167a3dddf31649",
    ];
    for (index, want) in table.iter().enumerate() {
        assert_eq!(str_of(&result["digests"][index], "fast"), *want);
    }

    // --- malformed frames: the same error codes as the Rust decoder ------------------------
    for (index, (name, bytes)) in malformed.iter().enumerate() {
        let js = &result["malformed"][index];
        let (code, server_id) = rust_decode_outcome(bytes);
        assert_eq!(
            js["code"],
            json!(code),
            "{name}: JS {js} vs Rust code {code}"
        );
        if let Some(server_id) = server_id {
            assert_eq!(js["serverId"], json!(server_id), "{name}");
        }
    }
    assert!(
        malformed.iter().any(|(name, _)| name == "welcome BOM kept")
            && result["malformed"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["serverId"] == json!("\u{feff}fe"))
    );

    // --- random numbers ----------------------------------------------------------------------
    for (index, (spec, (value, used))) in random.iter().enumerate() {
        assert_eq!(
            result["randomIndex"][index],
            json!({"value": value, "used": used}),
            "randomIndexFrom({spec})"
        );
    }
    let counts: Vec<u64> = result["uniform"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    // 30,000 draws over 3: 10,000 each, standard deviation 82; 600 is over 7 of them.
    assert!(
        counts.iter().all(|c| c.abs_diff(10_000) < 600),
        "crypto.getRandomValues picks are not uniform: {counts:?}"
    );
    let float_min = result["uniform"]["floatMin"].as_f64().unwrap();
    let float_max = result["uniform"]["floatMax"].as_f64().unwrap();
    assert!((0.0..0.01).contains(&float_min) && (0.99..1.0).contains(&float_max));

    check_observer_flow(&result["observer"], &observer);
}

/// The observer's flow over fake front-ends (the JS `observerFlow`).
fn check_observer_flow(flow: &Value, vectors: &ObserverVectors) {
    let token1 = token(0x11);
    let checkpoints: std::collections::HashMap<&str, &Value> = flow["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (str_of(c, "label"), c))
        .collect();
    let at = |label: &str| -> &Value {
        checkpoints
            .get(label)
            .unwrap_or_else(|| panic!("no checkpoint {label}"))
    };
    let digest_at = |seq: usize| format!("{:016x}", vectors.history.states[seq].digest());
    let sockets = flow["sockets"].as_array().unwrap();
    let urls: Vec<&str> = sockets.iter().map(|s| str_of(s, "url")).collect();
    let list: Vec<&str> = vectors.json["frontends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert_eq!(sockets.len(), 5, "connections made: {urls:?}");
    assert!(urls.iter().all(|u| list.contains(u)));

    // Start: one connection attempt, nothing known yet.
    let start = at("start");
    assert_eq!(str_of(start, "status"), "connecting");
    assert_eq!(str_of(start, "frontend"), "");
    assert_eq!(str_of(start, "session"), "no");
    assert_eq!(start["sockets"], json!(1));
    let welcomed = at("welcomed");
    assert_eq!(str_of(welcomed, "status"), "syncing");
    assert_eq!(str_of(welcomed, "frontend"), urls[0]);
    assert_eq!(str_of(welcomed, "session"), "yes");
    let live = at("live");
    assert_eq!(str_of(live, "status"), "live");
    assert_eq!(str_of(live, "epoch"), EPOCH_O.to_string());
    assert_eq!(str_of(live, "seq"), "26");
    assert_eq!(str_of(live, "digest"), digest_at(26));
    assert_eq!(
        live["entries"],
        json!(vectors.history.states[26].entries.len())
    );
    assert_eq!(at("quiet 499")["t"], json!(499));

    // The first connection: hello, subscribe, a probe after 0.5 s unheard, the pong to the
    // front-end's ping, another probe, and the give-up 1.5 s after the last frame heard.
    assert_eq!(
        sent(&sockets[0]),
        vec![
            (0.0, hello(None)),
            (0.0, subscribe(None)),
            (500.0, ClientToFrontend::Ping { nonce: 1 }),
            (700.0, ClientToFrontend::Pong { nonce: 42 }),
            (1200.0, ClientToFrontend::Ping { nonce: 2 }),
            (
                2200.0,
                ClientToFrontend::Error {
                    code: ErrorCode::Timeout,
                    text: "nothing received for 1.5 s".to_owned()
                }
            ),
        ]
    );
    assert_eq!(sockets[0]["closed"], json!(true));
    let silent = at("silent");
    assert_eq!(str_of(silent, "status"), "reconnecting");
    assert_eq!(silent["sockets"], json!(2));
    assert!(str_of(silent, "error").contains("nothing received for 1.5 s"));
    // Another front-end, at once; then the third after the second refused.
    assert_eq!(sockets[1]["createdAt"], json!(2200));
    assert_ne!(urls[1], urls[0]);
    assert_eq!(sent(&sockets[1]), vec![]);
    assert_eq!(sockets[2]["createdAt"], json!(2600));
    assert!(urls[2] != urls[0] && urls[2] != urls[1]);

    // The third: hello with the token, subscribe from the replica's position; a quiet-side
    // ping 2 s after the last frame sent (no probes: batches keep coming); a resubscribe
    // without position on a gap; a resubscribe from the position after Unavailable.
    let sent2 = sent(&sockets[2]);
    assert_eq!(sent2.len(), 5, "{sent2:?}");
    assert_eq!(
        sent2[..4],
        vec![
            (2700.0, hello(Some(token1.clone()))),
            (2700.0, subscribe(Some((EPOCH_O, 26)))),
            (4700.0, ClientToFrontend::Ping { nonce: 1 }),
            (5300.0, subscribe(None)),
        ]
    );
    assert!((5400.0..=5500.0).contains(&sent2[4].0), "{sent2:?}");
    assert_eq!(sent2[4].1, subscribe(Some((EPOCH_O, 35))));
    assert_eq!(sockets[2]["closed"], json!(true));
    let resumed = at("resumed");
    assert_eq!(str_of(resumed, "status"), "live");
    assert_eq!(str_of(resumed, "frontend"), urls[2]);
    assert_eq!(resumed["switches"], json!(1));
    assert_eq!(resumed["reconnects"], json!(1));
    assert_eq!(str_of(resumed, "seq"), "26");
    let streaming = at("streaming");
    assert_eq!(str_of(streaming, "seq"), "33");
    assert_eq!(str_of(streaming, "digest"), digest_at(33));
    assert_eq!(str_of(at("gap"), "status"), "syncing");
    assert_eq!(str_of(at("gap"), "seq"), "33");
    assert_eq!(str_of(at("resynced"), "status"), "live");
    assert_eq!(str_of(at("resynced"), "digest"), digest_at(35));
    assert_eq!(str_of(at("waiting"), "status"), "waiting");
    assert_eq!(str_of(at("waiting"), "digest"), digest_at(35));
    let back = at("back");
    assert_eq!(str_of(back, "status"), "live");
    assert_eq!(str_of(back, "seq"), "36");
    assert_eq!(str_of(back, "digest"), digest_at(36));

    // Error{ShuttingDown} on the third: every front-end failed in this round, so a backoff
    // of 100 to 500 ms before the next pick.
    let backoff = at("backoff");
    assert_eq!(str_of(backoff, "status"), "reconnecting");
    assert_eq!(backoff["sockets"], json!(3));
    assert!(str_of(backoff, "error").contains("ShuttingDown (8)"));
    let created = sockets[3]["createdAt"].as_f64().unwrap();
    assert!(
        (5700.0..=6100.0).contains(&created),
        "reconnected at {created}"
    );
    // The fourth: the old token; the Welcome gives a new session, the world restarted.
    assert_eq!(
        sent(&sockets[3]),
        vec![
            (6100.0, hello(Some(token1))),
            (6100.0, subscribe(Some((EPOCH_O, 36)))),
        ]
    );
    let renewed = at("new session");
    assert_eq!(str_of(renewed, "status"), "live");
    assert_eq!(str_of(renewed, "epoch"), EPOCH_O2.to_string());
    assert_eq!(str_of(renewed, "seq"), "5");
    assert_eq!(
        str_of(renewed, "digest"),
        format!("{:016x}", vectors.history2.states[5].digest())
    );
    assert_eq!(renewed["reconnects"], json!(2));
    let switches = if urls[3] == urls[2] { 1 } else { 2 };
    assert_eq!(renewed["switches"], json!(switches));
    // SessionMoved: the token is dropped, another front-end at once, a new session.
    assert_ne!(urls[4], urls[3]);
    assert_eq!(sent(&sockets[4]), vec![(6200.0, hello(None))]);
    let moved = at("moved");
    assert_eq!(str_of(moved, "session"), "no");
    assert_eq!(str_of(moved, "status"), "reconnecting");
    assert!(str_of(moved, "error").contains("SessionMoved (12)"));
    let stopped = at("stopped");
    assert_eq!(str_of(stopped, "status"), "stopped");
    assert_eq!(stopped["timers"], json!(0), "timers left after stop()");
    assert_eq!(sockets[4]["closed"], json!(true));

    // A world the front-end never served: the watch ends, and is asked for again 5 s later.
    assert_eq!(str_of(&flow["unknown"], "status"), "unsubscribed");
    assert!(str_of(&flow["unknown"], "error").contains("UnknownWorld (5)"));
    let retry: Vec<(f64, ClientToFrontend)> = flow["retry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["t"].as_f64().unwrap(), client_frame(str_of(s, "hex"))))
        .filter(|(_, message)| !matches!(message, ClientToFrontend::Ping { .. }))
        .collect();
    assert_eq!(retry, vec![(5000.0, subscribe(None))]);
}

#[test]
fn index_html_loads_and_exposes_its_state() {
    let source = std::fs::read_to_string(web_dir().join("index.html")).unwrap();
    assert_eq!(
        source
            .matches("<script src=\"/flotilla.js\"></script>")
            .count(),
        1,
        "index.html must load /flotilla.js once"
    );
    assert!(
        !source.contains("http://") && !source.contains("https://"),
        "index.html must not load external resources"
    );
    let dir = tempfile::Builder::new()
        .prefix("flotilla-web-index-")
        .tempdir()
        .unwrap();
    // From file://, /flotilla.js would be the root of the file system: load the copy next
    // to the page instead.
    std::fs::copy(
        web_dir().join("flotilla.js"),
        dir.path().join("flotilla.js"),
    )
    .unwrap();
    // The policy the front-end serves the page with (`edge.rs`), as a meta tag: no inline
    // script or style may be needed.
    let csp = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'; \
               connect-src 'self' ws: wss:; img-src 'self' data:\">";
    let page = source
        .replace("src=\"/flotilla.js\"", "src=\"flotilla.js\"")
        .replacen(
            "<meta charset=\"utf-8\">",
            &format!("<meta charset=\"utf-8\">{csp}"),
            1,
        );
    assert!(page.contains("Content-Security-Policy"));
    std::fs::write(dir.path().join("index.html"), page).unwrap();
    // Two front-ends on a port nobody listens on: the page keeps trying.
    let url = format!(
        "file://{}/index.html?frontends=ws://127.0.0.1:1/ws,ws://127.0.0.1:1/other&world=arena-7",
        dir.path().display()
    );
    // The page tries the closed port and backs off for a while (real time).
    let dump = dump_dom(&url, Duration::from_secs(3));
    let errors = script_errors(&dump.console);
    assert!(
        errors.is_empty(),
        "script errors in index.html:\n{}",
        errors.join("\n")
    );
    assert!(
        dump.dom.contains("data-flotilla-style=\"constructed\""),
        "the page's style sheet was not applied"
    );
    assert!(
        !source.contains("<style") && source.matches("<script").count() == 1,
        "index.html must hold no inline style or script (the front-end's CSP refuses them)"
    );
    for id in [
        "status", "frontend", "switches", "epoch", "seq", "digest", "entries", "session", "errors",
    ] {
        assert!(
            element_text(&dump.dom, id).is_some(),
            "no element #{id} in index.html's DOM"
        );
    }
    let text = |id: &str| element_text(&dump.dom, id).unwrap();
    let status = text("status");
    assert!(
        status == "connecting" || status == "reconnecting",
        "status {status:?}, errors {:?}",
        text("errors")
    );
    assert_eq!(text("world"), "arena-7");
    assert_eq!(text("frontend"), "");
    assert_eq!(text("switches"), "0");
    assert_eq!(text("session"), "no");
    assert_eq!(text("digest"), "");
    assert_eq!(text("entries"), "0");
    let error = text("errors");
    assert!(
        !error.contains("script error") && !error.contains("did not load"),
        "errors: {error}"
    );
    assert!(
        error.contains("ws://127.0.0.1:1/"),
        "no connection attempt reported: {error:?}"
    );
}

/// The snapshots of the vectors really come in several parts (First, Middle..., Last).
#[test]
fn the_vectors_hold_multi_part_snapshots() {
    let history = make_history(EPOCH_A, 5, 11);
    let frames = snapshot_frames(&world(WORLD_A), &history.states[5], 160);
    let mut decoder = Decoder::default();
    decoder.feed(&frames);
    let mut parts = Vec::new();
    while let Some(message) = decoder.next_message::<FrontendToClient>().unwrap() {
        if let FrontendToClient::Snapshot { part, .. } = message {
            parts.push(part);
        }
    }
    assert!(parts.len() >= 3, "{parts:?}");
    assert_eq!(parts.first(), Some(&SnapshotPart::First));
    assert_eq!(parts.last(), Some(&SnapshotPart::Last));
}
