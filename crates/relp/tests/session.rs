//! Client and server sessions: the exact bytes of the handshake, acknowledgement, rejection,
//! close and serverclose, protocol errors, window and queue limits, and a 10,000-message run
//! through in-memory pipes with connections dropped at random points.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure.

use std::collections::HashMap;

use flotilla_relp::offer::DEFAULT_SOFTWARE;
use flotilla_relp::{
    Error, MessageId, RelpClientConfig, RelpClientEvent, RelpClientSession, RelpClientState,
    RelpServerConfig, RelpServerEvent, RelpServerSession,
};

const LIBRELP_OPEN_RSP: &[u8] = b"1 rsp 93 200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog\n";

fn client_with(window: usize, capacity: usize) -> RelpClientSession {
    RelpClientSession::new(RelpClientConfig {
        window,
        capacity,
        ..RelpClientConfig::default()
    })
    .unwrap()
}

fn transmit(client: &mut RelpClientSession) -> Vec<u8> {
    let mut out = Vec::new();
    client.poll_transmit(&mut out);
    out
}

fn events(client: &mut RelpClientSession) -> Vec<RelpClientEvent> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

fn server_events(server: &mut RelpServerSession) -> Vec<RelpServerEvent> {
    std::iter::from_fn(|| server.poll_event()).collect()
}

/// A client whose session is open against librelp's exact `open` response.
fn open_client(window: usize, capacity: usize) -> RelpClientSession {
    let mut client = client_with(window, capacity);
    client.connect();
    transmit(&mut client);
    client.handle_input(LIBRELP_OPEN_RSP).unwrap();
    assert_eq!(events(&mut client), vec![RelpClientEvent::Opened]);
    client
}

#[test]
fn client_open_offer_matches_librelp_layout() {
    let mut client = RelpClientSession::new(RelpClientConfig {
        software: "librelp,1.11.0,http://librelp.adiscon.com".into(),
        ..RelpClientConfig::default()
    })
    .unwrap();
    assert_eq!(client.state(), RelpClientState::Disconnected);
    client.connect();
    assert_eq!(client.state(), RelpClientState::Opening);
    assert_eq!(
        transmit(&mut client),
        b"1 open 86 relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog\n"
    );
    // Nothing more until the server answers.
    assert!(transmit(&mut client).is_empty());
}

#[test]
fn handshake_and_one_message_produce_the_expected_bytes_both_ways() {
    let mut client = RelpClientSession::new(RelpClientConfig::default()).unwrap();
    let mut server = RelpServerSession::new(RelpServerConfig::default()).unwrap();
    let id = client.send(b"<13>1 - h a - - - hi".to_vec()).unwrap();
    client.connect();

    let offers = format!("relp_version=0\nrelp_software={DEFAULT_SOFTWARE}\ncommands=syslog");
    let open = transmit(&mut client);
    assert_eq!(
        open,
        format!("1 open {} {offers}\n", offers.len()).into_bytes()
    );
    server.handle_input(&open).unwrap();
    assert_eq!(
        server_events(&mut server),
        vec![RelpServerEvent::Opened {
            client_software: Some(DEFAULT_SOFTWARE.into())
        }]
    );
    let mut reply = Vec::new();
    server.poll_transmit(&mut reply);
    let body = format!("200 OK\n{offers}");
    assert_eq!(reply, format!("1 rsp {} {body}\n", body.len()).into_bytes());

    client.handle_input(&reply).unwrap();
    assert_eq!(events(&mut client), vec![RelpClientEvent::Opened]);
    let syslog = transmit(&mut client);
    assert_eq!(syslog, b"2 syslog 20 <13>1 - h a - - - hi\n");
    server.handle_input(&syslog).unwrap();
    assert_eq!(
        server_events(&mut server),
        vec![RelpServerEvent::Syslog {
            txnr: 2,
            message: b"<13>1 - h a - - - hi".to_vec()
        }]
    );
    let mut ack = Vec::new();
    server.poll_transmit(&mut ack);
    assert_eq!(ack, b"2 rsp 6 200 OK\n");
    client.handle_input(&ack).unwrap();
    assert_eq!(
        events(&mut client),
        vec![RelpClientEvent::Acked {
            first: id,
            count: 1
        }]
    );
    assert!(client.is_idle());
    assert_eq!(client.stats().acked, 1);
}

#[test]
fn messages_wait_for_the_open_response() {
    let mut client = client_with(8, 16);
    for n in 0..3 {
        client.send(format!("m{n}").into_bytes()).unwrap();
    }
    client.connect();
    let first = transmit(&mut client);
    assert!(first.starts_with(b"1 open "));
    assert_eq!(
        first.iter().filter(|&&b| b == b'\n').count(),
        3,
        "only the open frame (3 lines)"
    );
    client.handle_input(LIBRELP_OPEN_RSP).unwrap();
    assert_eq!(
        transmit(&mut client),
        b"2 syslog 2 m0\n3 syslog 2 m1\n4 syslog 2 m2\n"
    );
}

#[test]
fn window_limits_frames_in_flight() {
    let mut client = open_client(4, 16);
    for n in 0..10 {
        client.send(format!("m{n}").into_bytes()).unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(client.poll_transmit(&mut out), 4);
    assert_eq!(client.in_flight_count(), 4);
    assert_eq!(client.poll_transmit(&mut out), 0);
    client
        .handle_input(b"2 rsp 6 200 OK\n3 rsp 6 200 OK\n")
        .unwrap();
    out.clear();
    assert_eq!(client.poll_transmit(&mut out), 2);
    assert_eq!(out, b"6 syslog 2 m4\n7 syslog 2 m5\n");
    assert_eq!(client.unacked_count(), 8);
}

#[test]
fn queue_refuses_beyond_capacity_and_oversize_messages() {
    let mut client = RelpClientSession::new(RelpClientConfig {
        window: 2,
        capacity: 3,
        max_message_len: 5,
        ..RelpClientConfig::default()
    })
    .unwrap();
    assert_eq!(
        client.send(b"123456".to_vec()),
        Err(Error::MessageTooLarge { len: 6, max: 5 })
    );
    for _ in 0..3 {
        client.send(b"ok".to_vec()).unwrap();
    }
    assert_eq!(client.free_capacity(), 0);
    assert_eq!(
        client.send(b"ok".to_vec()),
        Err(Error::QueueFull { capacity: 3 })
    );
    assert_eq!(client.unacked_count(), 3);
}

#[test]
fn invalid_configs_are_refused() {
    let bad = [
        RelpClientConfig {
            window: 0,
            ..RelpClientConfig::default()
        },
        RelpClientConfig {
            window: 10,
            capacity: 5,
            ..RelpClientConfig::default()
        },
        RelpClientConfig {
            max_message_len: 1_000_000_000,
            ..RelpClientConfig::default()
        },
        RelpClientConfig {
            software: String::new(),
            ..RelpClientConfig::default()
        },
        RelpClientConfig {
            software: "a\nb".into(),
            ..RelpClientConfig::default()
        },
        RelpClientConfig {
            software: "x".repeat(256),
            ..RelpClientConfig::default()
        },
    ];
    for config in bad {
        assert!(matches!(
            RelpClientSession::new(config),
            Err(Error::InvalidConfig { .. })
        ));
    }
    assert!(matches!(
        RelpServerSession::new(RelpServerConfig {
            software: String::new(),
            ..RelpServerConfig::default()
        }),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn consecutive_acks_merge_and_rejections_drop_the_message() {
    let mut client = open_client(8, 8);
    let ids: Vec<MessageId> = (0..5)
        .map(|n| client.send(format!("m{n}").into_bytes()).unwrap())
        .collect();
    transmit(&mut client);
    client
        .handle_input(
            b"2 rsp 6 200 OK\n3 rsp 6 200 OK\n4 rsp 20 500 command disabled\n5 rsp 6 200 OK\n6 rsp 6 200 OK\n",
        )
        .unwrap();
    assert_eq!(
        events(&mut client),
        vec![
            RelpClientEvent::Acked {
                first: ids[0],
                count: 2
            },
            RelpClientEvent::Rejected {
                id: ids[2],
                code: 500,
                text: "command disabled".into(),
                message: b"m2".to_vec()
            },
            RelpClientEvent::Acked {
                first: ids[3],
                count: 2
            },
        ]
    );
    assert!(client.is_idle());
    let stats = client.stats();
    assert_eq!(
        (stats.acked, stats.rejected, stats.sent, stats.resent),
        (4, 1, 5, 0)
    );
    // A rejected message is not resent on a new connection.
    client.connection_lost();
    client.connect();
    assert!(transmit(&mut client).starts_with(b"1 open "));
    client.handle_input(LIBRELP_OPEN_RSP).unwrap();
    assert!(transmit(&mut client).is_empty());
    assert_eq!(client.stats().resent, 0);
}

#[test]
fn serverclose_requeues_in_flight_messages_for_resend_after_the_next_open() {
    let mut client = open_client(8, 8);
    let ids: Vec<MessageId> = (0..4)
        .map(|n| client.send(format!("m{n}").into_bytes()).unwrap())
        .collect();
    let mut out = Vec::new();
    client.poll_transmit(&mut out);
    // Server acks the first, then closes.
    client
        .handle_input(b"2 rsp 6 200 OK\n0 serverclose 0\n3 rsp 6 200 OK\n")
        .unwrap();
    assert_eq!(
        events(&mut client),
        vec![
            RelpClientEvent::Acked {
                first: ids[0],
                count: 1
            },
            RelpClientEvent::ServerClosed
        ]
    );
    assert_eq!(client.state(), RelpClientState::Disconnected);
    assert_eq!((client.in_flight_count(), client.pending_count()), (0, 3));
    client.send(b"new".to_vec()).unwrap();

    client.connect();
    let open = transmit(&mut client);
    assert!(open.starts_with(b"1 open "));
    assert!(
        transmit(&mut client).is_empty(),
        "no resend before the open response"
    );
    client.handle_input(LIBRELP_OPEN_RSP).unwrap();
    assert_eq!(
        transmit(&mut client),
        b"2 syslog 2 m1\n3 syslog 2 m2\n4 syslog 2 m3\n5 syslog 3 new\n"
    );
    assert_eq!(client.stats().resent, 3);
    assert_eq!(client.stats().connections, 2);
}

#[test]
fn connection_lost_requeues_in_original_order() {
    let mut client = open_client(3, 10);
    for n in 0..5 {
        client.send(format!("m{n}").into_bytes()).unwrap();
    }
    transmit(&mut client); // m0..m2 in flight
    client.connection_lost();
    client.connection_lost(); // idempotent
    assert_eq!((client.in_flight_count(), client.pending_count()), (0, 5));
    client.handle_input(b"2 rsp 6 200 OK\n").unwrap(); // stale bytes are discarded
    assert!(events(&mut client).is_empty());
    client.connect();
    transmit(&mut client);
    client.handle_input(LIBRELP_OPEN_RSP).unwrap();
    assert_eq!(
        transmit(&mut client),
        b"2 syslog 2 m0\n3 syslog 2 m1\n4 syslog 2 m2\n"
    );
}

#[test]
fn graceful_close_against_our_server_and_against_librelp_bytes() {
    let mut client = RelpClientSession::new(RelpClientConfig::default()).unwrap();
    let mut server = RelpServerSession::new(RelpServerConfig::default()).unwrap();
    client.connect();
    let mut wire = transmit(&mut client);
    server.handle_input(&wire).unwrap();
    wire.clear();
    server.poll_transmit(&mut wire);
    client.handle_input(&wire).unwrap();
    assert_eq!(events(&mut client), vec![RelpClientEvent::Opened]);

    let mut close = Vec::new();
    assert!(client.close(&mut close));
    assert_eq!(close, b"2 close 0\n");
    assert_eq!(client.state(), RelpClientState::Closing);
    server.handle_input(&close).unwrap();
    assert_eq!(
        server_events(&mut server).last(),
        Some(&RelpServerEvent::Closed)
    );
    let mut reply = Vec::new();
    server.poll_transmit(&mut reply);
    assert_eq!(reply, b"2 rsp 6 200 OK\n0 serverclose 0\n");
    assert!(server.is_closed());
    client.handle_input(&reply).unwrap();
    assert_eq!(events(&mut client), vec![RelpClientEvent::Closed]);
    assert_eq!(client.state(), RelpClientState::Disconnected);
    assert!(!client.close(&mut close), "close is only for open sessions");

    // librelp answers close with an empty rsp, then serverclose.
    let mut client = open_client(8, 8);
    let mut close = Vec::new();
    client.close(&mut close);
    client.handle_input(b"2 rsp 0\n0 serverclose 0\n").unwrap();
    assert_eq!(events(&mut client), vec![RelpClientEvent::Closed]);
}

#[test]
fn client_protocol_errors_drop_the_connection_and_keep_messages() {
    let cases: &[(&[u8], Error)] = &[
        (
            b"1 syslog 1 x\n",
            Error::UnexpectedCommand {
                command: "syslog".into(),
            },
        ),
        (b"77 rsp 6 200 OK\n", Error::UnexpectedResponse { txnr: 77 }),
        (b"2 rsp 2 OK\n", Error::MalformedResponse),
        (
            b"2 rsp x",
            Error::InvalidFrameByte {
                field: flotilla_relp::FrameField::DataLen,
                byte: b'x',
            },
        ),
    ];
    for (input, expected) in cases {
        let mut client = open_client(8, 8);
        client.send(b"m".to_vec()).unwrap();
        transmit(&mut client);
        assert_eq!(client.handle_input(input).as_ref(), Err(expected));
        assert_eq!(
            events(&mut client),
            vec![RelpClientEvent::ProtocolError(expected.clone())]
        );
        assert_eq!(client.state(), RelpClientState::Disconnected);
        assert_eq!(client.pending_count(), 1);
    }
}

#[test]
fn refused_or_incomplete_open_is_a_protocol_error() {
    let cases: &[(&[u8], Error)] = &[
        (
            b"1 rsp 44 500 required command not supported by client\n",
            Error::OpenRejected {
                code: 500,
                text: "required command not supported by client".into(),
            },
        ),
        (
            b"1 rsp 21 200 OK\nrelp_version=0\n",
            Error::MissingOffer {
                offer: "commands=syslog",
            },
        ),
        (
            b"1 rsp 22 200 OK\ncommands=syslog\n",
            Error::MissingOffer {
                offer: "relp_version",
            },
        ),
        (
            b"1 rsp 37 200 OK\nrelp_version=x\ncommands=syslog\n",
            Error::MissingOffer {
                offer: "numeric relp_version",
            },
        ),
        (b"2 rsp 6 200 OK\n", Error::UnexpectedResponse { txnr: 2 }),
    ];
    for (input, expected) in cases {
        let mut client = client_with(8, 8);
        client.connect();
        transmit(&mut client);
        assert_eq!(
            client.handle_input(input).as_ref(),
            Err(expected),
            "{input:?}"
        );
        assert_eq!(client.state(), RelpClientState::Disconnected);
    }
}

#[test]
fn server_answers_like_librelp_for_odd_commands() {
    let mut server = RelpServerSession::new(RelpServerConfig::default()).unwrap();
    server.handle_input(b"1 syslog 1 x\n").unwrap();
    server
        .handle_input(b"2 open 34 relp_version=0\ncommands=syslog,foo\n3 bogus 0\n4 open 14 relp_version=0\n5 syslog 1 y\n")
        .unwrap();
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    let expected_open =
        format!("200 OK\nrelp_version=0\nrelp_software={DEFAULT_SOFTWARE}\ncommands=syslog");
    let expected = format!(
        "1 rsp 20 500 command disabled\n2 rsp {} {expected_open}\n3 rsp 19 500 unknown command\n4 rsp 37 200 connection already open - ignored\n5 rsp 6 200 OK\n",
        expected_open.len()
    );
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    assert_eq!(
        server_events(&mut server),
        vec![
            RelpServerEvent::Opened {
                client_software: None
            },
            RelpServerEvent::Syslog {
                txnr: 5,
                message: b"y".to_vec()
            },
        ]
    );
    assert_eq!(server.received_count(), 1);
}

#[test]
fn server_refuses_open_without_syslog_command() {
    let mut server = RelpServerSession::new(RelpServerConfig::default()).unwrap();
    server.handle_input(b"1 open 14 relp_version=0\n").unwrap();
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert_eq!(
        out,
        b"1 rsp 44 500 required command not supported by client\n"
    );
    assert_eq!(
        server_events(&mut server),
        vec![RelpServerEvent::OpenRefused {
            reason: Error::MissingOffer {
                offer: "commands=syslog"
            }
        }]
    );
    assert!(!server.is_open());
}

#[test]
fn server_rejects_out_of_sequence_txnr() {
    let mut server = RelpServerSession::new(RelpServerConfig::default()).unwrap();
    let error = server.handle_input(b"2 open 0\n").unwrap_err();
    assert_eq!(
        error,
        Error::UnexpectedTxnr {
            expected: 1,
            received: 2
        }
    );
    assert_eq!(
        server_events(&mut server),
        vec![RelpServerEvent::ProtocolError(error)]
    );
    assert!(server.is_closed());
}

#[test]
fn manual_acks_are_transmitted_in_command_order() {
    let mut server = RelpServerSession::new(RelpServerConfig {
        auto_ack: false,
        ..RelpServerConfig::default()
    })
    .unwrap();
    server
        .handle_input(b"1 open 30 relp_version=0\ncommands=syslog\n2 syslog 1 a\n3 syslog 1 b\n4 syslog 1 c\n")
        .unwrap();
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert!(out.starts_with(b"1 rsp "));
    assert_eq!(server.unanswered_count(), 3);
    out.clear();
    server.ack(3).unwrap();
    server.reject(4, "disk full").unwrap();
    assert_eq!(server.poll_transmit(&mut out), 0, "2 is still unanswered");
    assert_eq!(server.ack(9), Err(Error::UnknownTxnr { txnr: 9 }));
    server.ack(2).unwrap();
    assert_eq!(server.ack(2), Err(Error::UnknownTxnr { txnr: 2 }));
    server.poll_transmit(&mut out);
    assert_eq!(
        out,
        b"2 rsp 6 200 OK\n3 rsp 6 200 OK\n4 rsp 13 500 disk full\n"
    );
}

#[test]
fn server_initiated_close_sends_the_hint() {
    let mut server = RelpServerSession::new(RelpServerConfig::default()).unwrap();
    server
        .handle_input(b"1 open 30 relp_version=0\ncommands=syslog\n")
        .unwrap();
    server.close();
    let mut out = Vec::new();
    assert_eq!(
        server.poll_transmit(&mut out),
        2,
        "open response and serverclose"
    );
    assert!(out.ends_with(b"\n0 serverclose 0\n"));
    assert!(server.is_closed());
    server.handle_input(b"2 syslog 1 x\n").unwrap();
    assert!(
        server_events(&mut server)
            .iter()
            .all(|e| !matches!(e, RelpServerEvent::Syslog { .. }))
    );
}

/// A small deterministic generator for the simulation (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Moves a random-length prefix (at least one byte if any) of `pipe` out.
fn take_chunk(rng: &mut Rng, pipe: &mut Vec<u8>) -> Vec<u8> {
    if pipe.is_empty() {
        return Vec::new();
    }
    let len = if rng.below(3) == 0 {
        pipe.len()
    } else {
        1 + rng.below(pipe.len() as u64) as usize
    };
    pipe.drain(..len).collect()
}

fn run_simulation(seed: u64, total: usize, window: usize, capacity: usize) {
    let mut rng = Rng(seed);
    let mut client = client_with(window, capacity);
    let mut server = RelpServerSession::new(RelpServerConfig::default()).unwrap();
    let mut to_server: Vec<u8> = Vec::new();
    let mut to_client: Vec<u8> = Vec::new();
    let mut ids: Vec<MessageId> = Vec::with_capacity(total);
    let mut received: HashMap<usize, u32> = HashMap::new();
    let mut acked = vec![false; total];
    let mut drops = 0;
    let mut server_closes = 0;
    client.connect();

    let mut steps = 0;
    while !(ids.len() == total && client.is_idle()) {
        steps += 1;
        assert!(
            steps < 2_000_000,
            "simulation did not converge (seed {seed})"
        );

        // Producer: a random burst, stopping at QueueFull.
        for _ in 0..rng.below(40) {
            if ids.len() == total {
                break;
            }
            let n = ids.len();
            match client.send(format!("<14>1 - host app - - - message {n}").into_bytes()) {
                Ok(id) => ids.push(id),
                Err(Error::QueueFull { .. }) => break,
                Err(other) => panic!("unexpected send error {other}"),
            }
        }
        assert!(client.unacked_count() <= capacity);

        client.poll_transmit(&mut to_server);
        assert!(client.in_flight_count() <= window, "window exceeded");

        let chunk = take_chunk(&mut rng, &mut to_server);
        server.handle_input(&chunk).unwrap();
        while let Some(event) = server.poll_event() {
            if let RelpServerEvent::Syslog { message, .. } = event {
                let text = String::from_utf8(message).unwrap();
                let n: usize = text.rsplit(' ').next().unwrap().parse().unwrap();
                *received.entry(n).or_default() += 1;
            }
        }
        server.poll_transmit(&mut to_client);

        let chunk = take_chunk(&mut rng, &mut to_client);
        client.handle_input(&chunk).unwrap();
        let mut reconnect = false;
        while let Some(event) = client.poll_event() {
            match event {
                RelpClientEvent::Acked { first, count } => {
                    for id in first.get()..first.get() + count {
                        let slot = &mut acked[id as usize];
                        assert!(!*slot, "message {id} acked twice");
                        *slot = true;
                    }
                }
                RelpClientEvent::ServerClosed => reconnect = true,
                RelpClientEvent::Opened => {}
                other => panic!("unexpected event {other:?}"),
            }
        }

        // Faults: the connection breaks, or the server closes it.
        if !reconnect && rng.below(30) == 0 {
            drops += 1;
            client.connection_lost();
            reconnect = true;
        } else if !reconnect && server.is_open() && rng.below(60) == 0 {
            server_closes += 1;
            server.close();
            server.poll_transmit(&mut to_client);
        }
        if reconnect {
            to_server.clear();
            to_client.clear();
            server = RelpServerSession::new(RelpServerConfig::default()).unwrap();
            client.connect();
        }
    }

    eprintln!(
        "seed {seed}: {steps} steps, {drops} drops, {server_closes} server closes, {:?}",
        client.stats()
    );
    assert!(
        drops + server_closes > 5,
        "the run must exercise reconnects (seed {seed})"
    );
    for (n, was_acked) in acked.iter().enumerate() {
        assert!(
            received.contains_key(&n),
            "message {n} never arrived (seed {seed})"
        );
        assert!(was_acked, "message {n} never acked (seed {seed})");
    }
    let stats = client.stats();
    assert_eq!(stats.acked, total as u64);
    assert_eq!(stats.rejected, 0);
    let deliveries: u64 = received.values().map(|&c| u64::from(c)).sum();
    assert!(deliveries >= total as u64);
    assert!(
        deliveries <= stats.sent,
        "the server cannot see more than was sent"
    );
    assert!(
        stats.resent > 0,
        "reconnects must cause resends (seed {seed})"
    );
}

#[test]
fn ten_thousand_messages_survive_random_connection_drops() {
    run_simulation(1, 10_000, 128, 1024);
}

#[test]
fn small_windows_and_other_seeds_also_deliver_everything() {
    for seed in 2..6 {
        run_simulation(seed, 2_000, 1 + seed as usize * 3, 64);
    }
}

#[test]
fn take_unacknowledged_hands_back_in_flight_then_pending_in_order() {
    let mut client = open_client(2, 10);
    for m in ["a", "b", "c", "d"] {
        client.send(m.as_bytes().to_vec()).unwrap();
    }
    transmit(&mut client); // a and b in flight, c and d pending
    assert_eq!(client.in_flight_count(), 2);
    let taken = client.take_unacknowledged();
    assert_eq!(
        taken,
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
    );
    assert!(client.is_idle());
    assert_eq!(client.unacked_count(), 0);
}
