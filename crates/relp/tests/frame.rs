//! Frame codec tests: byte-exact encodings from the RELP specification and librelp, decoder
//! behaviour under arbitrary chunking, and rejection of malformed or oversize input.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure.

use flotilla_relp::frame::{MAX_TXNR, next_txnr};
use flotilla_relp::{Command, Error, Frame, FrameDecoder, FrameField, Response};
use proptest::prelude::*;

const LIBRELP_OPEN: &[u8] = b"1 open 86 relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog\n";

fn encode(frame: Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let written = frame.encode(&mut out).unwrap();
    assert_eq!(written, out.len());
    assert_eq!(frame.encoded_len(), out.len());
    out
}

/// A decoded frame as owned parts: TXNR, command name, data.
type Owned = (u32, String, Vec<u8>);

fn decode_all(bytes: &[u8]) -> Vec<Owned> {
    let mut decoder = FrameDecoder::default();
    decoder.push(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        frames.push((
            frame.txnr,
            frame.command.as_str().to_string(),
            frame.data.to_vec(),
        ));
    }
    assert_eq!(decoder.buffered_len(), 0);
    frames
}

fn decode_error(bytes: &[u8], max: usize) -> Error {
    let mut decoder = FrameDecoder::new(max);
    decoder.push(bytes);
    loop {
        match decoder.next_frame() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no error for {:?}", String::from_utf8_lossy(bytes)),
            Err(error) => return error,
        }
    }
}

#[test]
fn open_offer_encodes_like_librelp() {
    let offers =
        b"relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog";
    assert_eq!(encode(Frame::new(1, Command::Open, offers)), LIBRELP_OPEN);
}

#[test]
fn syslog_rsp_close_and_serverclose_encode_exactly() {
    let message = b"<13>1 2024-01-01T00:00:00Z host app - - - hello";
    assert_eq!(
        encode(Frame::new(2, Command::Syslog, message)),
        b"2 syslog 47 <13>1 2024-01-01T00:00:00Z host app - - - hello\n"
    );
    assert_eq!(
        encode(Frame::new(2, Command::Rsp, b"200 OK")),
        b"2 rsp 6 200 OK\n"
    );
    assert_eq!(encode(Frame::new(3, Command::Close, b"")), b"3 close 0\n");
    assert_eq!(
        encode(Frame::new(0, Command::ServerClose, b"")),
        b"0 serverclose 0\n"
    );
    assert_eq!(
        encode(Frame::new(MAX_TXNR, Command::Other("starttls"), b"")),
        b"999999999 starttls 0\n"
    );
}

#[test]
fn example_frames_decode_to_their_parts() {
    let mut stream = LIBRELP_OPEN.to_vec();
    stream.extend_from_slice(b"1 rsp 6 200 OK\n3 close 0\n0 serverclose 0\n7 syslog 1 x\n");
    let frames = decode_all(&stream);
    assert_eq!(frames.len(), 5);
    assert_eq!(frames[0].0, 1);
    assert_eq!(frames[0].1, "open");
    assert_eq!(&frames[0].2[..], &LIBRELP_OPEN[10..LIBRELP_OPEN.len() - 1]);
    assert_eq!(frames[1], (1, "rsp".into(), b"200 OK".to_vec()));
    assert_eq!(frames[2], (3, "close".into(), Vec::new()));
    assert_eq!(frames[3], (0, "serverclose".into(), Vec::new()));
    assert_eq!(frames[4], (7, "syslog".into(), b"x".to_vec()));
}

#[test]
fn data_may_contain_line_feeds_and_spaces() {
    let data = b"line one\nline two \n";
    let bytes = encode(Frame::new(5, Command::Syslog, data));
    assert_eq!(
        decode_all(&bytes),
        vec![(5, "syslog".into(), data.to_vec())]
    );
}

#[test]
fn leading_zeros_are_accepted_like_librelp() {
    assert_eq!(
        decode_all(b"001 syslog 002 ab\n"),
        vec![(1, "syslog".into(), b"ab".to_vec())]
    );
}

#[test]
fn malformed_frames_are_rejected_with_the_right_variant() {
    use FrameField::*;
    let max = 1000;
    let cases: &[(&[u8], Error)] = &[
        (
            b"x",
            Error::InvalidFrameByte {
                field: Txnr,
                byte: b'x',
            },
        ),
        (
            b" 1 rsp 0\n",
            Error::InvalidFrameByte {
                field: Txnr,
                byte: b' ',
            },
        ),
        (
            b"1x",
            Error::InvalidFrameByte {
                field: Txnr,
                byte: b'x',
            },
        ),
        (b"1234567890", Error::FieldTooLong { field: Txnr }),
        (
            b"1 open1",
            Error::InvalidFrameByte {
                field: Command,
                byte: b'1',
            },
        ),
        (
            b"1  0\n",
            Error::InvalidFrameByte {
                field: Command,
                byte: b' ',
            },
        ),
        (
            b"1 abcdefghijklmnopqrstuvwxyzabcdefg",
            Error::FieldTooLong { field: Command },
        ),
        (
            b"1 syslog x",
            Error::InvalidFrameByte {
                field: DataLen,
                byte: b'x',
            },
        ),
        (
            b"1 syslog \n",
            Error::InvalidFrameByte {
                field: DataLen,
                byte: b'\n',
            },
        ),
        (
            b"1 syslog 1234567890",
            Error::FieldTooLong { field: DataLen },
        ),
        (
            b"1 syslog 5\n",
            Error::InvalidFrameByte {
                field: DataSeparator,
                byte: b'\n',
            },
        ),
        (
            b"1 close 0 \n",
            Error::InvalidFrameByte {
                field: Trailer,
                byte: b' ',
            },
        ),
        (
            b"1 syslog 3 abcX",
            Error::InvalidFrameByte {
                field: Trailer,
                byte: b'X',
            },
        ),
        (
            b"1 rsp 6 200 OK\n2 syslog 3 abc\r\n",
            Error::InvalidFrameByte {
                field: Trailer,
                byte: b'\r',
            },
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            &decode_error(input, max),
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn oversize_frame_is_refused_before_its_data_arrives() {
    let mut decoder = FrameDecoder::new(10);
    decoder.push(b"1 syslog 11 ");
    assert_eq!(
        decoder.next_frame(),
        Err(Error::FrameTooLarge {
            data_len: 11,
            max: 10
        })
    );
    // Exactly the maximum is fine.
    let mut decoder = FrameDecoder::new(10);
    decoder.push(b"1 syslog 10 0123456789\n");
    assert_eq!(decoder.next_frame().unwrap().unwrap().data, b"0123456789");
}

#[test]
fn a_failed_decoder_stays_failed_until_reset() {
    let mut decoder = FrameDecoder::default();
    decoder.push(b"1 rsp 6 200 OK\nbad");
    assert!(decoder.next_frame().unwrap().is_some());
    let error = decoder.next_frame().unwrap_err();
    assert!(decoder.has_failed());
    decoder.push(b"2 rsp 6 200 OK\n");
    assert_eq!(decoder.next_frame().unwrap_err(), error);
    assert_eq!(decoder.buffered_len(), 0);
    decoder.reset();
    decoder.push(b"2 rsp 6 200 OK\n");
    assert_eq!(decoder.next_frame().unwrap().unwrap().txnr, 2);
}

#[test]
fn invalid_frames_are_not_encoded() {
    let mut out = Vec::new();
    assert_eq!(
        Frame::new(MAX_TXNR + 1, Command::Syslog, b"x").encode(&mut out),
        Err(Error::InvalidTxnr { txnr: MAX_TXNR + 1 })
    );
    for name in [
        "",
        "two words",
        "abcdefghijklmnopqrstuvwxyzabcdefg",
        "syslog2",
    ] {
        assert_eq!(
            Frame::new(1, Command::Other(name), b"").encode(&mut out),
            Err(Error::InvalidCommand)
        );
    }
    assert!(out.is_empty());
}

#[test]
fn txnr_wraps_after_the_maximum() {
    assert_eq!(next_txnr(1), 2);
    assert_eq!(next_txnr(MAX_TXNR - 1), MAX_TXNR);
    assert_eq!(next_txnr(MAX_TXNR), 1);
    assert_eq!(next_txnr(u32::MAX), 1);
}

#[test]
fn responses_parse_in_every_documented_shape() {
    let ok = Response::parse(b"200 OK").unwrap();
    assert_eq!((ok.code, ok.text, ok.data), (200, &b"OK"[..], &b""[..]));
    assert!(ok.is_ok());
    let open = Response::parse(b"200 OK\nrelp_version=0\ncommands=syslog").unwrap();
    assert_eq!(open.text, b"OK");
    assert_eq!(open.data, b"relp_version=0\ncommands=syslog");
    let bare = Response::parse(b"500").unwrap();
    assert_eq!((bare.code, bare.text, bare.data), (500, &b""[..], &b""[..]));
    assert!(!bare.is_ok());
    let data_only = Response::parse(b"200\nx").unwrap();
    assert_eq!((data_only.text, data_only.data), (&b""[..], &b"x"[..]));
    let error = Response::parse(b"500 command disabled").unwrap();
    assert_eq!((error.code, error.text), (500, &b"command disabled"[..]));
    for bad in [&b""[..], b"20", b"2x0 OK", b"200x", b"OK"] {
        assert_eq!(Response::parse(bad), Err(Error::MalformedResponse));
    }
}

fn command_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("syslog".to_string()),
        Just("rsp".to_string()),
        Just("open".to_string()),
        "[a-zA-Z]{1,32}",
    ]
}

fn frames() -> impl Strategy<Value = Vec<Owned>> {
    prop::collection::vec(
        (
            0..=MAX_TXNR,
            command_name(),
            prop::collection::vec(any::<u8>(), 0..300),
        ),
        0..20,
    )
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..64, 1..50)
}

/// Feeds `bytes` to a decoder in chunks of the given sizes (cycled), collecting frames and the
/// first error.
fn decode_chunked(bytes: &[u8], sizes: &[usize], max: usize) -> (Vec<Owned>, Option<Error>) {
    let mut decoder = FrameDecoder::new(max);
    let mut frames = Vec::new();
    let mut rest = bytes;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap()).min(rest.len());
        decoder.push(&rest[..size]);
        rest = &rest[size..];
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push((
                    frame.txnr,
                    frame.command.as_str().to_string(),
                    frame.data.to_vec(),
                )),
                Ok(None) => break,
                Err(error) => return (frames, Some(error)),
            }
        }
    }
    (frames, None)
}

proptest! {
    #[test]
    fn frames_survive_any_chunking(frames in frames(), sizes in chunk_sizes()) {
        let mut bytes = Vec::new();
        for (txnr, name, data) in &frames {
            Frame::new(*txnr, Command::from_name(name), data).encode(&mut bytes).unwrap();
        }
        let (decoded, error) = decode_chunked(&bytes, &sizes, 1000);
        prop_assert_eq!(error, None);
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_does_not_change_the_outcome(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        sizes in chunk_sizes(),
        max in 0usize..100,
    ) {
        let whole = decode_chunked(&bytes, &[usize::MAX], max);
        let chunked = decode_chunked(&bytes, &sizes, max);
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn frame_like_garbage_never_panics(
        bytes in prop::collection::vec(
            prop_oneof![Just(b' '), Just(b'\n'), Just(b'0'), Just(b'1'), Just(b'9'), Just(b's'), any::<u8>()],
            0..200,
        ),
        sizes in chunk_sizes(),
    ) {
        let whole = decode_chunked(&bytes, &[usize::MAX], 50);
        let chunked = decode_chunked(&bytes, &sizes, 50);
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn responses_round_trip(code in 100u16..1000, text in "[ -~]{0,80}", data in prop::collection::vec(any::<u8>(), 0..50)) {
        let mut out = Vec::new();
        Response { code, text: text.as_bytes(), data: &data }.encode(&mut out);
        let parsed = Response::parse(&out).unwrap();
        prop_assert_eq!(parsed.code, code);
        prop_assert_eq!(parsed.text, text.as_bytes());
        prop_assert_eq!(parsed.data, &data[..]);
    }

    #[test]
    fn response_parsing_never_panics(data in prop::collection::vec(any::<u8>(), 0..40)) {
        let _ = Response::parse(&data);
    }
}
