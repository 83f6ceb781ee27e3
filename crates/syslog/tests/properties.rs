//! Property tests: emit/parse round trips, sanitize always yields valid messages,
//! parsers and the frame decoder never panic on arbitrary bytes, and framing survives
//! arbitrary chunking in every mode.
#![allow(clippy::unwrap_used)] // tests may unwrap

use flotilla_syslog::*;
use proptest::prelude::*;

/// Printable US-ASCII of `1..=max` bytes, never the NILVALUE `-`.
fn header_field(max: usize) -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        proptest::string::string_regex(&format!("[!-~]{{1,{max}}}"))
            .unwrap()
            .prop_filter("not the NILVALUE", |s| s != "-"),
    )
}

fn sd_name_chars(allow_at: bool) -> Vec<char> {
    (33u8..=126)
        .map(char::from)
        .filter(|c| !matches!(c, '=' | ']' | '"') && (allow_at || *c != '@'))
        .collect()
}

fn sd_name(max: usize, allow_at: bool) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(sd_name_chars(allow_at)), 1..=max)
        .prop_map(|chars| chars.into_iter().collect())
}

fn sd_id() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(REGISTERED_SD_IDS.to_vec()).prop_map(String::from),
        (sd_name(20, false), "[0-9]{1,5}(\\.[0-9]{1,2})?")
            .prop_map(|(n, pen)| format!("{n}@{pen}")),
    ]
}

fn sd_elements() -> impl Strategy<Value = Vec<SdElement>> {
    proptest::collection::vec(
        (
            sd_id(),
            proptest::collection::vec((sd_name(32, true), any::<String>()), 0..4),
        ),
        0..4,
    )
    .prop_map(|raw| {
        let mut elements: Vec<SdElement> = Vec::new();
        for (id, params) in raw {
            if elements.iter().all(|e| e.id != id) {
                elements.push(SdElement {
                    id,
                    params: params
                        .into_iter()
                        .map(|(n, v)| SdParam::new(n, v))
                        .collect(),
                });
            }
        }
        elements
    })
}

fn timestamp() -> impl Strategy<Value = Option<Timestamp>> {
    proptest::option::of(
        (
            -62_167_219_200i64..=253_402_300_799,
            0u32..1_000_000,
            -1439i16..=1439,
        )
            .prop_filter_map("local time within 0000-9999", |(secs, micros, offset)| {
                Timestamp::from_unix(secs, micros * 1000)
                    .ok()?
                    .with_offset_minutes(offset)
                    .ok()
            }),
    )
}

fn msg_and_bom() -> impl Strategy<Value = (Vec<u8>, bool)> {
    prop_oneof![
        any::<String>().prop_map(|s| (s.into_bytes(), true)),
        proptest::collection::vec(any::<u8>(), 0..200)
            .prop_filter("a BOM-less MSG may not start with the BOM bytes", |m| !m
                .starts_with(BOM))
            .prop_map(|m| (m, false)),
    ]
}

prop_compose! {
    fn valid_message()(
        facility in proptest::sample::select(Facility::ALL.to_vec()),
        severity in proptest::sample::select(Severity::ALL.to_vec()),
        timestamp in timestamp(),
        hostname in header_field(MAX_HOSTNAME_LEN),
        app_name in header_field(MAX_APP_NAME_LEN),
        proc_id in header_field(MAX_PROC_ID_LEN),
        msg_id in header_field(MAX_MSG_ID_LEN),
        structured_data in sd_elements(),
        (msg, msg_bom) in msg_and_bom(),
    ) -> Message {
        Message { facility, severity, timestamp, hostname, app_name, proc_id, msg_id, structured_data, msg, msg_bom }
    }
}

prop_compose! {
    fn arbitrary_message()(
        facility in proptest::sample::select(Facility::ALL.to_vec()),
        severity in proptest::sample::select(Severity::ALL.to_vec()),
        timestamp in timestamp(),
        hostname in proptest::option::of(any::<String>()),
        app_name in proptest::option::of(".{0,60}"),
        proc_id in proptest::option::of(any::<String>()),
        msg_id in proptest::option::of(".{0,40}"),
        structured_data in proptest::collection::vec(
            (".{0,40}", proptest::collection::vec((".{0,40}", any::<String>()), 0..3)), 0..5),
        msg in proptest::collection::vec(any::<u8>(), 0..100),
        msg_bom in any::<bool>(),
        bom_prefix in any::<bool>(),
    ) -> Message {
        let structured_data = structured_data
            .into_iter()
            .map(|(id, params)| SdElement { id, params: params.into_iter().map(|(n, v)| SdParam::new(n, v)).collect() })
            .collect();
        let msg = if bom_prefix { [BOM.as_slice(), &msg].concat() } else { msg };
        Message { facility, severity, timestamp, hostname, app_name, proc_id, msg_id, structured_data, msg, msg_bom }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn emit_then_parse_strict_round_trips(m in valid_message()) {
        prop_assert_eq!(m.validate(), Ok(()));
        let mut out = Vec::new();
        emit_5424(&m, &mut out).unwrap();
        let parsed = parse_strict(&out).unwrap();
        prop_assert_eq!(parsed.format, Format::Rfc5424);
        prop_assert_eq!(parsed.to_owned(), m);
    }

    #[test]
    fn lenient_agrees_with_strict_on_valid_messages(m in valid_message()) {
        prop_assume!(!m.msg.last().is_some_and(|b| matches!(b, b'\n' | b'\r' | 0)));
        let mut out = Vec::new();
        emit_5424(&m, &mut out).unwrap();
        let lenient = parse_lenient(&out, &LenientDefaults::default()).unwrap();
        prop_assert_eq!(lenient.format, Format::Rfc5424);
        prop_assert_eq!(lenient.to_owned(), m);
    }

    #[test]
    fn sanitized_messages_validate_and_emit(mut m in arbitrary_message()) {
        m.sanitize();
        prop_assert_eq!(m.validate(), Ok(()));
        let mut out = Vec::new();
        emit_5424(&m, &mut out).unwrap();
        prop_assert_eq!(parse_strict(&out).unwrap().to_owned(), m.clone());
        let mut bsd = Vec::new();
        emit_3164(&m, &Rfc3164Options::default(), &mut bsd).unwrap();
        prop_assert!(bsd.len() <= 1024);
        let again = { let mut c = m.clone(); c.sanitize(); c };
        prop_assert_eq!(again, m);
    }

    #[test]
    fn parsers_never_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_strict(&input);
        if let Ok(p) = parse_lenient(&input, &LenientDefaults::default()) {
            let _ = p.to_owned();
        }
    }

    #[test]
    fn parsers_never_panic_on_near_syslog(tail in proptest::collection::vec(
        proptest::sample::select(b"<>[]=\"\\ -:0123456789TZ.@abcOct\xEF\xBB\xBF\n".to_vec()), 0..120)) {
        for prefix in [&b"<13>1 "[..], b"<13>1 - h a p m ", b"<13>1 - h a p m [x@1 ", b"<13>Oct  3 ", b""] {
            let input = [prefix, &tail].concat();
            if let Ok(p) = parse_strict(&input) {
                let owned = p.to_owned();
                prop_assert_eq!(owned.validate(), Ok(()));
                let mut out = Vec::new();
                emit_5424(&owned, &mut out).unwrap();
                prop_assert_eq!(parse_strict(&out).unwrap().to_owned(), owned);
            }
            if let Ok(p) = parse_lenient(&input, &LenientDefaults::default()) {
                let _ = p.to_owned();
            }
        }
    }

    #[test]
    fn frame_decoder_never_panics(
        input in proptest::collection::vec(any::<u8>(), 0..400),
        chunk in 1usize..50,
        max in 0usize..64,
    ) {
        for framing in [Framing::OctetCounting, Framing::LineFeed, Framing::Auto] {
            let mut d = FrameDecoder::new(framing, max);
            for piece in input.chunks(chunk) {
                d.push(piece);
                while let Some(frame) = d.next_frame() {
                    if let Ok(frame) = frame { prop_assert!(frame.len() <= max); }
                }
                prop_assert!(d.buffered_len() <= max + chunk + 22);
            }
            while d.finish().is_some() {}
            prop_assert_eq!(d.buffered_len(), 0);
        }
    }

    #[test]
    fn framing_round_trips_with_random_chunking(
        frames in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 1..80)), 0..20),
        chunk_sizes in proptest::collection::vec(1usize..40, 1..10),
    ) {
        // Octet counting: any non-empty frame.
        let octet_frames: Vec<Vec<u8>> = frames.iter().map(|(_, f)| f.clone()).collect();
        // LF: no LF inside; Auto LF frames start with '<'.
        let lf_frames: Vec<Vec<u8>> = frames
            .iter()
            .map(|(_, f)| { let mut f: Vec<u8> = f.iter().map(|&b| if b == b'\n' { b' ' } else { b }).collect(); f[0] = b'<'; f })
            .collect();
        let mut auto_frames = Vec::new();
        let mut octet_stream = Vec::new();
        let mut lf_stream = Vec::new();
        let mut auto_stream = Vec::new();
        for (i, (use_octets, _)) in frames.iter().enumerate() {
            encode_octet_counted(&octet_frames[i], &mut octet_stream);
            encode_lf(&lf_frames[i], &mut lf_stream).unwrap();
            if *use_octets {
                encode_octet_counted(&octet_frames[i], &mut auto_stream);
                auto_frames.push(octet_frames[i].clone());
            } else {
                encode_lf(&lf_frames[i], &mut auto_stream).unwrap();
                auto_frames.push(lf_frames[i].clone());
            }
        }
        for (framing, stream, expected) in [
            (Framing::OctetCounting, &octet_stream, &octet_frames),
            (Framing::LineFeed, &lf_stream, &lf_frames),
            (Framing::Auto, &auto_stream, &auto_frames),
        ] {
            let mut d = FrameDecoder::new(framing, 100);
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut rest = stream.as_slice();
            let mut sizes = chunk_sizes.iter().cycle();
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap()).min(rest.len());
                d.push(&rest[..n]);
                rest = &rest[n..];
                while let Some(frame) = d.next_frame() {
                    got.push(frame.unwrap().to_vec());
                }
            }
            prop_assert!(d.finish().is_none());
            prop_assert_eq!(&got, expected);
        }
    }
}
