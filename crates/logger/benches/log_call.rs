//! Cost of one log call on the application thread (message plus two fields),
//! through the `log` facade, the `tracing` layer and the direct API, with the
//! sender thread draining to a TCP sink on loopback.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_logger::{Config, DropPolicy, Logger, Severity};
use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

fn sink() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// Times `iters` calls of `call` in bursts of 1,000, letting the sender drain the
/// queue between bursts (untimed): the application-side cost while the sender keeps up.
fn steady(logger: &Logger, iters: u64, mut call: impl FnMut()) -> Duration {
    let mut timed = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(1000);
        let start = std::time::Instant::now();
        for _ in 0..n {
            call();
        }
        timed += start.elapsed();
        done += n;
        logger.flush(Duration::from_secs(5));
    }
    timed
}

fn bench(c: &mut Criterion) {
    let addr = sink();
    let mut config = Config::with_collectors(&format!("tcp://{addr}")).expect("config");
    config.app_name = Some("bench".into());
    config.include_target = false;
    config.drop_policy = DropPolicy::DropOldest;
    let logger = Logger::start(config).expect("start");
    log::set_boxed_logger(Box::new(logger.clone())).expect("global logger");
    log::set_max_level(log::LevelFilter::Info);

    let mut group = c.benchmark_group("log_call");
    group.measurement_time(Duration::from_secs(3));
    let mut i = 0u64;
    // Steady state: bursts of 1,000 calls are timed; between bursts (untimed) the
    // sender drains the queue, so the calls measure the application-side cost
    // while the sender thread keeps up (it still runs concurrently, as in a
    // service). The variants below keep the queue permanently full instead.
    group.bench_function("steady_log_macro_two_fields", |b| {
        b.iter_custom(|iters| {
            steady(&logger, iters, || {
                i += 1;
                log::info!(user = i, action = "login"; "user logged in");
            })
        })
    });
    group.bench_function("saturated_log_macro_two_fields", |b| {
        b.iter(|| {
            i += 1;
            log::info!(user = i, action = "login"; "user logged in");
        })
    });
    group.bench_function("saturated_direct_two_fields", |b| {
        b.iter(|| {
            logger.log(
                Severity::Informational,
                "user logged in",
                &[("user", "42"), ("action", "login")],
            )
        })
    });
    let layer = flotilla_logger::TracingLayer::new(logger.clone());
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("steady_tracing_two_fields", |b| {
            b.iter_custom(|iters| {
                steady(&logger, iters, || {
                    i += 1;
                    tracing::info!(user = i, action = "login", "user logged in");
                })
            })
        });
        group.bench_function("saturated_tracing_two_fields", |b| {
            b.iter(|| {
                i += 1;
                tracing::info!(user = i, action = "login", "user logged in");
            })
        });
    });
    // The `syslog` crate's TCP logger on the same message, side by side: its call
    // formats and writes synchronously on the application thread.
    let formatter = syslog::Formatter5424 {
        facility: syslog::Facility::LOG_USER,
        hostname: Some("bench-host".into()),
        process: "bench".into(),
        pid: std::process::id(),
    };
    let mut syslog_crate = syslog::tcp(formatter, sink()).expect("syslog crate connects");
    group.bench_function("syslog_crate_tcp_two_fields", |b| {
        b.iter(|| {
            i += 1;
            let mut data = std::collections::BTreeMap::new();
            let mut params = std::collections::BTreeMap::new();
            params.insert("user".to_owned(), i.to_string());
            params.insert("action".to_owned(), "login".to_owned());
            data.insert("fields@32473".to_owned(), params);
            let _ = syslog_crate.info((0u32, data, "user logged in"));
        })
    });
    group.finish();
    logger.shutdown(Duration::from_secs(2));
}

criterion_group!(benches, bench);
criterion_main!(benches);
