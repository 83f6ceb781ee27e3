//! Tests of the testkit's SeaweedFS (`weed server` with its S3 gateway): start, create a
//! bucket, upload with a hand-written HTTP request, list, download, restart, stop; two
//! instances side by side.
#![allow(clippy::unwrap_used)]

use flotilla_testkit::{Error, Weed};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// One anonymous S3 `PUT /bucket/key` written by hand; returns the status line.
fn raw_put(weed: &Weed, target: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(weed.addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!(
        "PUT {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        weed.addr(),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or("").to_string()
}

fn process_is_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn weed_stores_lists_and_returns_objects() {
    let started = Instant::now();
    let weed = Weed::start().unwrap();
    let port = weed.addr().port();
    assert_eq!(weed.endpoint(), format!("http://127.0.0.1:{port}"));
    assert_eq!(weed.ports().s3, port);

    weed.create_bucket("flotilla-logs").unwrap();
    // A second create of the same bucket is an error (409), not silently accepted.
    assert!(matches!(
        weed.create_bucket("flotilla-logs"),
        Err(Error::Http { .. })
    ));
    assert_eq!(
        weed.list_objects("flotilla-logs").unwrap(),
        Vec::<String>::new()
    );

    let status = raw_put(
        &weed,
        "/flotilla-logs/2024/01/02/host-a.log",
        b"line one\nline two\n",
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    weed.put_object("flotilla-logs", "odd key & <name>.log", b"\x00\xffbinary")
        .unwrap();

    assert_eq!(
        weed.list_objects("flotilla-logs").unwrap(),
        vec!["2024/01/02/host-a.log", "odd key & <name>.log"]
    );
    assert_eq!(
        weed.get_object("flotilla-logs", "2024/01/02/host-a.log")
            .unwrap(),
        b"line one\nline two\n"
    );
    assert_eq!(
        weed.get_object("flotilla-logs", "odd key & <name>.log")
            .unwrap(),
        b"\x00\xffbinary"
    );
    match weed.get_object("flotilla-logs", "missing") {
        Err(Error::Http { reason, .. }) => assert!(reason.contains("404"), "{reason}"),
        other => panic!("expected a 404, got {other:?}"),
    }

    let pid = weed.pid().unwrap();
    let dir = weed.dir().to_path_buf();
    weed.stop().unwrap();
    assert!(process_is_gone(pid));
    assert!(!dir.exists(), "the temporary folder is deleted");
    assert!(
        !Path::new(&format!("/tmp/seaweedfs-s3-grpc-{}.sock", port)).exists(),
        "no socket left in /tmp"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn two_weeds_side_by_side_and_restart_keeps_data() {
    let mut first = Weed::start().unwrap();
    let second = Weed::start().unwrap();
    let (a, b) = (first.ports(), second.ports());
    let mut all: Vec<u16> = [
        a.s3,
        a.s3_grpc,
        a.master,
        a.master_grpc,
        a.volume,
        a.volume_grpc,
    ]
    .into_iter()
    .chain([
        a.filer,
        a.filer_grpc,
        b.s3,
        b.s3_grpc,
        b.master,
        b.master_grpc,
    ])
    .chain([b.volume, b.volume_grpc, b.filer, b.filer_grpc])
    .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 16, "every port is distinct: {a:?} {b:?}");

    first.create_bucket("one").unwrap();
    first.put_object("one", "k", b"first").unwrap();
    second.create_bucket("two").unwrap();
    second.put_object("two", "k", b"second").unwrap();
    assert_eq!(first.get_object("one", "k").unwrap(), b"first");
    assert_eq!(second.get_object("two", "k").unwrap(), b"second");
    assert!(first.list_objects("two").is_err(), "buckets are not shared");

    let pid = first.pid().unwrap();
    first.kill().unwrap();
    assert!(process_is_gone(pid));
    assert!(TcpStream::connect(first.addr()).is_err());
    first.restart().unwrap();
    assert_eq!(first.list_objects("one").unwrap(), vec!["k"]);
    assert_eq!(first.get_object("one", "k").unwrap(), b"first");
}
