//! One test per rule: limits at and past the edge, forbidden bytes, SD rules and
//! escaping, timestamp strictness, PRI forms, RFC 3164 emission and lenient parsing,
//! framing resynchronisation.
#![allow(clippy::unwrap_used)] // tests may unwrap

use flotilla_syslog::*;

fn header(host: &str, app: &str, procid: &str, msgid: &str) -> Vec<u8> {
    format!("<13>1 - {host} {app} {procid} {msgid} - hi").into_bytes()
}

fn emit(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    emit_5424(m, &mut out).unwrap();
    out
}

fn ts(secs: i64, offset: i16) -> Timestamp {
    Timestamp::from_unix(secs, 0)
        .unwrap()
        .with_offset_minutes(offset)
        .unwrap()
}

#[test]
fn parse_length_limits() {
    type Case = (Field, usize, fn(&str) -> Vec<u8>);
    let cases: [Case; 4] = [
        (Field::Hostname, 255, |v| header(v, "a", "p", "m")),
        (Field::AppName, 48, |v| header("h", v, "p", "m")),
        (Field::ProcId, 128, |v| header("h", "a", v, "m")),
        (Field::MsgId, 32, |v| header("h", "a", "p", v)),
    ];
    for (field, max, build) in cases {
        assert!(
            parse_strict(&build(&"x".repeat(max))).is_ok(),
            "{field} at limit"
        );
        assert_eq!(
            parse_strict(&build(&"x".repeat(max + 1))),
            Err(Error::FieldTooLong {
                field,
                len: max + 1,
                max
            }),
            "{field} past limit"
        );
    }
}

#[test]
fn parse_forbidden_header_bytes() {
    let mut input = header("h\u{7f}", "a", "p", "m");
    assert_eq!(
        parse_strict(&input),
        Err(Error::ForbiddenByte {
            field: Field::Hostname,
            offset: 9,
            byte: 0x7f
        })
    );
    input = header("h", "a\u{e9}", "p", "m");
    assert!(matches!(
        parse_strict(&input),
        Err(Error::ForbiddenByte {
            field: Field::AppName,
            ..
        })
    ));
    // Two spaces: an empty field.
    assert_eq!(
        parse_strict(b"<13>1 - h  p m - hi"),
        Err(Error::FieldEmpty {
            field: Field::AppName
        })
    );
    // Lenient accepts UTF-8 and over-long fields.
    let long = header(&"x".repeat(300), "a\u{e9}", "p", "m");
    let p = parse_lenient(&long, &LenientDefaults::default()).unwrap();
    assert_eq!(p.format, Format::Rfc5424);
    assert_eq!(p.app_name, Some("a\u{e9}"));
}

#[test]
fn priority_forms() {
    assert_eq!(
        parse_strict(b"<0>1 - - - - - -").unwrap().facility,
        Facility::Kern
    );
    assert_eq!(
        parse_strict(b"<00>1 - - - - - -"),
        Err(Error::InvalidPriority {
            offset: 1,
            reason: "leading zero"
        })
    );
    assert_eq!(
        parse_strict(b"<192>1 - - - - - -"),
        Err(Error::InvalidPriority {
            offset: 1,
            reason: "above 191"
        })
    );
    assert!(parse_strict(b"<1000>1 - - - - - -").is_err());
    assert!(parse_strict(b"<>1 - - - - - -").is_err());
    assert!(parse_strict(b"<13 1 - - - - - -").is_err());
    let p = parse_strict(b"<191>1 - - - - - -").unwrap();
    assert_eq!(
        (p.facility, p.severity),
        (Facility::Local7, Severity::Debug)
    );
    assert_eq!(
        parse_strict(b"<13>2 - - - - - -"),
        Err(Error::UnsupportedVersion { offset: 4 })
    );
    assert_eq!(
        parse_strict(b"<13>11 - - - - - -"),
        Err(Error::UnsupportedVersion { offset: 4 })
    );
    assert_eq!(parse_strict(b""), Err(Error::EmptyInput));
}

#[test]
fn timestamps_strict_and_lenient() {
    let seven = b"<13>1 2003-10-11T22:14:15.1234567Z h a p m - x";
    assert_eq!(
        parse_strict(seven),
        Err(Error::TooManyFractionDigits { offset: 32 })
    );
    let d = LenientDefaults::default();
    let p = parse_lenient(seven, &d).unwrap();
    assert_eq!(p.format, Format::Rfc5424);
    assert_eq!(p.timestamp.unwrap().nanos(), 123_456_700);
    let nine = b"<13>1 2003-10-11T22:14:15.123456789+02:00 h a p m - x";
    let p = parse_lenient(nine, &d).unwrap();
    assert_eq!(p.timestamp.unwrap().nanos(), 123_456_789);
    assert_eq!(p.timestamp.unwrap().offset_minutes(), 120);
    assert_eq!(p.hostname, Some("h"));
    let six = b"<13>1 2003-10-11T22:14:15.123456Z h a p m - x";
    assert_eq!(
        parse_strict(six).unwrap().timestamp.unwrap().nanos(),
        123_456_000
    );
    let leap = b"<13>1 2016-12-31T23:59:60Z h a p m - x";
    assert_eq!(parse_strict(leap), Err(Error::LeapSecond { offset: 23 }));
    assert!(parse_lenient(leap, &d).unwrap().timestamp.is_some());
    let nil = parse_strict(b"<13>1 - h a p m - x").unwrap();
    assert_eq!(nil.timestamp, None);
    let nil = parse_lenient(b"<13>1 - h a p m - x", &d).unwrap();
    assert_eq!((nil.timestamp, nil.format), (None, Format::Rfc5424));
}

#[test]
fn structured_data_rules() {
    let dup = b"<13>1 - h a p m [x@1 a=\"1\"][x@1 b=\"2\"] hi";
    assert_eq!(parse_strict(dup), Err(Error::DuplicateSdId { offset: 28 }));
    let lenient = parse_lenient(dup, &LenientDefaults::default()).unwrap();
    assert_eq!(lenient.structured_data.iter().count(), 2);
    assert!(matches!(
        parse_strict(b"<13>1 - h a p m [unregistered a=\"1\"] hi"),
        Err(Error::InvalidSdId { offset: 17, .. })
    ));
    assert!(parse_strict(b"<13>1 - h a p m [timeQuality tzKnown=\"1\"] hi").is_ok());
    assert!(parse_strict(b"<13>1 - h a p m [meta] hi").is_ok());
    assert!(parse_strict(b"<13>1 - h a p m [x@1 a=1] hi").is_err());
    assert!(parse_strict(b"<13>1 - h a p m [x@1 a=\"1\"]hi").is_err());
    assert!(parse_strict(b"<13>1 - h a p m [x@1  a=\"1\"] hi").is_err());
    assert!(parse_strict(b"<13>1 - h a p m [x@1 a=\"1\"").is_err());
    assert!(parse_strict(b"<13>1 - h a p m - ").unwrap().msg.is_empty());
}

#[test]
fn param_value_escaping() {
    let m = Message::new(Facility::User, Severity::Notice, "m")
        .with_sd_element(SdElement::new("x@1").with_param("k", r#"a"b\c]d"#));
    let out = emit(&m);
    assert!(
        out.windows(15).any(|w| w == br#"k="a\"b\\c\]d"]"#),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let p = parse_strict(&out).unwrap();
    let param = p.structured_data.get("x@1").unwrap().param("k").unwrap();
    assert_eq!(param.raw_value, r#"a\"b\\c\]d"#);
    assert_eq!(param.value(), r#"a"b\c]d"#);
    assert_eq!(p.to_owned(), m);
    // A backslash before any other character is an ordinary backslash.
    assert_eq!(unescape_param_value(r"a\nb\\"), r"a\nb\");
    assert!(matches!(
        unescape_param_value("plain"),
        std::borrow::Cow::Borrowed("plain")
    ));
    // Unescaped ']' inside a value: strict rejects, lenient reads it.
    let raw = b"<13>1 - h a p m [x@1 k=\"a]b\"] hi";
    assert!(matches!(
        parse_strict(raw),
        Err(Error::ForbiddenByte {
            field: Field::SdParamValue,
            byte: b']',
            ..
        })
    ));
    let p = parse_lenient(raw, &LenientDefaults::default()).unwrap();
    assert_eq!(
        p.structured_data
            .get("x@1")
            .unwrap()
            .param("k")
            .unwrap()
            .value(),
        "a]b"
    );
    assert_eq!(p.msg, b"hi");
}

#[test]
fn ipv6_hostnames() {
    let raw = b"<13>1 2003-10-11T22:14:15Z 2001:db8::1 app - - - hello";
    assert_eq!(parse_strict(raw).unwrap().hostname, Some("2001:db8::1"));
    let d = LenientDefaults::default();
    assert_eq!(
        parse_lenient(raw, &d).unwrap().hostname,
        Some("2001:db8::1")
    );
    let bsd = parse_lenient(b"<13>Oct 11 22:14:15 2001:db8::1 su[42]: hello", &d).unwrap();
    assert_eq!(bsd.format, Format::Rfc3164);
    assert_eq!(bsd.hostname, Some("2001:db8::1"));
    assert_eq!((bsd.app_name, bsd.proc_id), (Some("su"), Some("42")));
    assert_eq!(bsd.msg, b"hello");
    let m = Message::new(Facility::User, Severity::Notice, "x").with_hostname("fe80::1");
    assert_eq!(parse_strict(&emit(&m)).unwrap().to_owned(), m);
}

#[test]
fn non_utf8_msg_and_bom() {
    let raw = b"<13>1 - h a p m - \xff\xfe\x00binary";
    let p = parse_strict(raw).unwrap();
    assert_eq!(p.msg, b"\xff\xfe\x00binary");
    assert!(!p.msg_bom);
    assert_eq!(p.msg_str(), None);
    let p = parse_lenient(raw, &LenientDefaults::default()).unwrap();
    assert_eq!(p.msg, b"\xff\xfe\x00binary");
    // BOM followed by invalid UTF-8.
    let bad = b"<13>1 - h a p m - \xEF\xBB\xBFok\xff";
    assert_eq!(
        parse_strict(bad),
        Err(Error::BomWithInvalidUtf8 { offset: 23 })
    );
    let p = parse_lenient(bad, &LenientDefaults::default()).unwrap();
    assert!(!p.msg_bom);
    assert_eq!(p.msg, b"\xEF\xBB\xBFok\xff");
    // A BOM alone is an empty UTF-8 MSG.
    let m = Message::new(Facility::User, Severity::Notice, Vec::new()).with_bom(true);
    let out = emit(&m);
    assert!(out.ends_with(b" - \xEF\xBB\xBF"));
    assert_eq!(parse_strict(&out).unwrap().to_owned(), m);
    // Emission refuses a BOM on non-UTF-8 and leaves the buffer alone.
    let mut out = b"keep".to_vec();
    let bad = Message::new(Facility::User, Severity::Notice, vec![0xffu8]).with_bom(true);
    assert_eq!(
        emit_5424(&bad, &mut out),
        Err(Error::BomWithInvalidUtf8 { offset: 0 })
    );
    assert_eq!(
        emit_3164(&bad, &Rfc3164Options::default(), &mut out),
        Err(Error::BomWithInvalidUtf8 { offset: 0 })
    );
    assert_eq!(out, b"keep");
}

#[test]
fn emit_error_leaves_buffer_unchanged() {
    let mut out = b"prefix".to_vec();
    let m = Message::new(Facility::User, Severity::Notice, "x").with_msg_id("m".repeat(33));
    assert!(emit_5424(&m, &mut out).is_err());
    assert_eq!(out, b"prefix");
    let ok = Message::new(Facility::User, Severity::Notice, "x");
    emit_5424(&ok, &mut out).unwrap();
    assert_eq!(out, b"prefix<13>1 - - - - - - x");
}

#[test]
fn rfc3164_emission() {
    // 2026-10-03T07:05:09Z: a day below 10 is space-padded.
    let m = Message::new(Facility::Auth, Severity::Critical, "hello")
        .with_timestamp(ts(1_791_011_109, 0))
        .with_hostname("web1.example.com")
        .with_app_name("my-app_2")
        .with_proc_id("123");
    let mut out = Vec::new();
    emit_3164(&m, &Rfc3164Options::default(), &mut out).unwrap();
    assert_eq!(out, b"<34>Oct  3 07:05:09 web1 my-app_2[123]: hello");
    // The timestamp's own offset is used.
    let shifted = m.clone().with_timestamp(ts(1_791_011_109, -8 * 60));
    out.clear();
    let keep_domain = Rfc3164Options {
        strip_domain: false,
        ..Default::default()
    };
    emit_3164(&shifted, &keep_domain, &mut out).unwrap();
    assert_eq!(
        out,
        b"<34>Oct  2 23:05:09 web1.example.com my-app_2[123]: hello"
    );
    // No timestamp: no header at all.
    let mut clockless = m.clone();
    clockless.timestamp = None;
    out.clear();
    emit_3164(&clockless, &Rfc3164Options::default(), &mut out).unwrap();
    assert_eq!(out, b"<34>my-app_2[123]: hello");
    // Structured data: prepended by default, or dropped.
    let with_sd = m
        .clone()
        .with_sd_element(SdElement::new("origin").with_param("ip", "192.0.2.1"));
    out.clear();
    emit_3164(&with_sd, &Rfc3164Options::default(), &mut out).unwrap();
    assert!(out.ends_with(b"my-app_2[123]: [origin ip=\"192.0.2.1\"] hello"));
    out.clear();
    let drop = Rfc3164Options {
        structured_data: StructuredDataIn3164::Drop,
        ..Default::default()
    };
    emit_3164(&with_sd, &drop, &mut out).unwrap();
    assert!(out.ends_with(b"my-app_2[123]: hello"));
    // The lenient parser reads it back.
    out.clear();
    emit_3164(&m, &Rfc3164Options::default(), &mut out).unwrap();
    let d = LenientDefaults {
        now: Some(ts(1_791_011_109, 0)),
        ..Default::default()
    };
    let p = parse_lenient(&out, &d).unwrap();
    assert_eq!(p.format, Format::Rfc3164);
    assert_eq!(p.timestamp, Some(ts(1_791_011_109, 0)));
    assert_eq!(
        (p.hostname, p.app_name, p.proc_id),
        (Some("web1"), Some("my-app_2"), Some("123"))
    );
    assert_eq!(p.msg, b"hello");
    // TAG limited to 32 alphanumerics; the tag is dropped if nothing is left.
    let long_tag = m.clone().with_app_name("a".repeat(40));
    out.clear();
    emit_3164(&long_tag, &Rfc3164Options::default(), &mut out).unwrap();
    assert!(
        out.windows(39)
            .any(|w| w == format!("{}[123]: ", "a".repeat(32)).as_bytes())
    );
    // Dashes, underscores, dots and slashes stay (real programs use them), and
    // the lenient parser reads such a TAG back whole.
    let dashed = m.clone().with_app_name("systemd-logind_2.x/y");
    out.clear();
    emit_3164(&dashed, &Rfc3164Options::default(), &mut out).unwrap();
    assert!(
        out.ends_with(b" systemd-logind_2.x/y[123]: hello"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let p = parse_lenient(&out, &d).unwrap();
    assert_eq!(p.app_name, Some("systemd-logind_2.x/y"));
    let no_tag = m.clone().with_app_name("+++");
    out.clear();
    emit_3164(&no_tag, &Rfc3164Options::default(), &mut out).unwrap();
    assert_eq!(out, b"<34>Oct  3 07:05:09 web1 hello");
}

#[test]
fn rfc3164_length_limit() {
    let base = Message::new(Facility::User, Severity::Notice, Vec::new())
        .with_timestamp(ts(1_791_011_109, 0))
        .with_hostname("h")
        .with_app_name("app");
    let prefix_len = b"<13>Oct  3 07:05:09 h app: ".len();
    let mut ascii = base.clone();
    ascii.msg = vec![b'x'; 2000];
    let mut out = b"kept".to_vec();
    emit_3164(&ascii, &Rfc3164Options::default(), &mut out).unwrap();
    assert_eq!(out.len(), 4 + 1024);
    assert!(out.starts_with(b"kept<13>"));
    // Exactly at the limit: nothing cut.
    let mut exact = base.clone();
    exact.msg = vec![b'y'; 1024 - prefix_len];
    out.clear();
    emit_3164(&exact, &Rfc3164Options::default(), &mut out).unwrap();
    assert_eq!(out.len(), 1024);
    assert_eq!(out.last(), Some(&b'y'));
    // A cut inside a 3-byte character moves back to its start.
    let mut euros = base.clone();
    euros.msg = "\u{20ac}".repeat(400).into_bytes();
    out.clear();
    emit_3164(&euros, &Rfc3164Options::default(), &mut out).unwrap();
    let expected = prefix_len + (1024 - prefix_len) / 3 * 3;
    assert_eq!(out.len(), expected);
    assert!(std::str::from_utf8(&out).is_ok());
}

#[test]
fn lenient_missing_pri_and_fallbacks() {
    let d = LenientDefaults::default();
    let p = parse_lenient(b"just some text\n", &d).unwrap();
    assert_eq!(p.format, Format::Unstructured);
    assert_eq!((p.facility, p.severity), (Facility::User, Severity::Notice));
    assert_eq!(p.msg, b"just some text");
    let p = parse_lenient(b"Oct 11 22:14:15 host su: hi\0", &d).unwrap();
    assert_eq!(p.format, Format::Rfc3164);
    assert_eq!((p.facility, p.severity), (Facility::User, Severity::Notice));
    assert_eq!(
        (p.hostname, p.app_name, p.msg),
        (Some("host"), Some("su"), &b"hi"[..])
    );
    // PRI with content only (RFC 3164 4.3.2).
    let p = parse_lenient(b"<30>hello there", &d).unwrap();
    assert_eq!(p.format, Format::Rfc3164);
    assert_eq!(
        (p.facility, p.severity),
        (Facility::Daemon, Severity::Informational)
    );
    assert_eq!(p.msg, b"hello there");
    // Hostname omitted, tag right after the timestamp.
    let p = parse_lenient(b"<13>Oct  3 07:05:09 sshd[99]: Accepted", &d).unwrap();
    assert_eq!(
        (p.hostname, p.app_name, p.proc_id, p.msg),
        (None, Some("sshd"), Some("99"), &b"Accepted"[..])
    );
    // Invalid PRI is kept as text.
    let p = parse_lenient(b"<999>oops\r\n", &d).unwrap();
    assert_eq!((p.format, p.msg), (Format::Unstructured, &b"<999>oops"[..]));
    assert_eq!(parse_lenient(b"\n\0\r\n", &d), Err(Error::EmptyInput));
    assert_eq!(parse_lenient(b"", &d), Err(Error::EmptyInput));
    // RFC 5424 without SD: MSG starts where SD would.
    let p = parse_lenient(b"<13>1 2003-10-11T22:14:15Z h a p m hello world", &d).unwrap();
    assert_eq!((p.format, p.msg), (Format::Rfc5424, &b"hello world"[..]));
    // Truncated RFC 5424 header.
    let p = parse_lenient(b"<13>1 - host", &d).unwrap();
    assert_eq!(
        (p.format, p.hostname, p.app_name),
        (Format::Rfc5424, Some("host"), None)
    );
    // ISO timestamp in BSD format (rsyslog forwarding format).
    let p = parse_lenient(b"<13>2003-10-11T22:14:15.003Z myhost app: text", &d).unwrap();
    assert_eq!(
        (p.format, p.hostname, p.app_name),
        (Format::Rfc3164, Some("myhost"), Some("app"))
    );
    assert_eq!(p.timestamp.unwrap().nanos(), 3_000_000);
}

#[test]
fn lenient_3164_year_and_zone_rule() {
    // Received 2027-01-01T00:30:00Z: "Dec 31 23:59:00" is the previous year.
    let now = Timestamp::from_local_parts(
        DateTimeParts {
            year: 2027,
            month: 1,
            day: 1,
            hour: 0,
            minute: 30,
            second: 0,
        },
        0,
        0,
    )
    .unwrap();
    let d = LenientDefaults {
        now: Some(now),
        ..Default::default()
    };
    let p = parse_lenient(b"<13>Dec 31 23:59:00 h t: x", &d).unwrap();
    assert_eq!(p.timestamp.unwrap().local_parts().year, 2026);
    let p = parse_lenient(b"<13>Jan  1 00:10:00 h t: x", &d).unwrap();
    assert_eq!(p.timestamp.unwrap().local_parts().year, 2027);
    // Fixed fallback year and zone when there is no `now`.
    let fixed = LenientDefaults {
        fallback_year: 2024,
        utc_offset_minutes: 60,
        ..Default::default()
    };
    let p = parse_lenient(b"<13>Feb 29 12:00:00 h t: x", &fixed).unwrap();
    let ts = p.timestamp.unwrap();
    assert_eq!(ts.offset_minutes(), 60);
    assert_eq!(
        ts.local_parts(),
        DateTimeParts {
            year: 2024,
            month: 2,
            day: 29,
            hour: 12,
            minute: 0,
            second: 0
        }
    );
    // Feb 29 in a common year: header recognised, no timestamp.
    let p = parse_lenient(b"<13>Feb 29 12:00:00 h t: x", &LenientDefaults::default()).unwrap();
    assert_eq!(
        (p.format, p.timestamp, p.hostname),
        (Format::Rfc3164, None, Some("h"))
    );
    // Explicit year, single-digit day.
    let p = parse_lenient(
        b"<13>Oct 3 2020 07:05:09 h t: x",
        &LenientDefaults::default(),
    )
    .unwrap();
    assert_eq!(p.timestamp.unwrap().local_parts().year, 2020);
}

#[test]
fn framing_oversize_resync_in_auto_mode() {
    let mut stream = Vec::new();
    encode_octet_counted(&[b'a'; 50], &mut stream);
    encode_lf(b"<13>short", &mut stream).unwrap();
    encode_lf(&[b'<'; 60], &mut stream).unwrap();
    encode_octet_counted(b"<13>ok", &mut stream);
    let mut decoder = FrameDecoder::new(Framing::Auto, 20);
    let mut results = Vec::new();
    for chunk in stream.chunks(7) {
        decoder.push(chunk);
        while let Some(frame) = decoder.next_frame() {
            results.push(frame.map(<[u8]>::to_vec));
        }
    }
    assert!(decoder.finish().is_none());
    assert_eq!(
        results,
        vec![
            Err(Error::FrameTooLong { len: 50, max: 20 }),
            Ok(b"<13>short".to_vec()),
            Err(Error::FrameTooLong { len: 21, max: 20 }),
            Ok(b"<13>ok".to_vec()),
        ]
    );
}

#[test]
fn names() {
    for f in Facility::ALL {
        assert_eq!(Facility::from_name(f.name()), Some(f));
        assert_eq!(Facility::from_code(f.code()), Some(f));
    }
    for s in Severity::ALL {
        assert_eq!(Severity::from_name(s.name()), Some(s));
        assert_eq!(Severity::from_code(s.code()), Some(s));
    }
    assert_eq!(Facility::from_code(24), None);
    assert_eq!(Severity::from_code(8), None);
    assert_eq!(Facility::Local7.name(), "local7");
    assert_eq!(Severity::from_name("error"), Some(Severity::Error));
    assert_eq!(Severity::from_name("warn"), Some(Severity::Warning));
    assert_eq!(Severity::from_name("emergency"), Some(Severity::Emergency));
    assert_eq!(Severity::from_name("critical"), Some(Severity::Critical));
    assert_eq!(
        Severity::from_name("informational"),
        Some(Severity::Informational)
    );
    assert_eq!(Severity::from_name("nope"), None);
    assert_eq!(priority_value(Facility::Local4, Severity::Notice), 165);
    assert_eq!(
        split_priority(165),
        Some((Facility::Local4, Severity::Notice))
    );
    assert_eq!(split_priority(192), None);
}

#[test]
fn error_messages_name_field_and_offset() {
    let text = Error::ForbiddenByte {
        field: Field::Hostname,
        offset: 3,
        byte: b' ',
    }
    .to_string();
    assert!(
        text.contains("HOSTNAME") && text.contains("offset 3") && text.contains("0x20"),
        "{text}"
    );
    let boxed: Box<dyn std::error::Error> = Box::new(Error::EmptyInput);
    assert!(boxed.to_string().contains("empty"));
}
