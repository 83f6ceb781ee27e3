//! The browser observer page in headless Chromium, against real processes: a `flotilla
//! game` (the arena), three `flotilla frontend`s with WebSocket listeners and one token
//! key, and a Rust fleet client keeping its own replica of the same world. The page's
//! replica digest (shown in its DOM) must equal the Rust replica's at the same position,
//! and after the front-end it uses is killed (SIGKILL) the page must carry on from
//! another one, picked at random, with its replica still equal. A second test runs a
//! front-end that lets no anonymous observer watch: the page is refused without a join
//! token, and with one in its URL's fragment (`#join=`, as `flotilla join-token` prints
//! it) it watches and keeps the game's replica.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Running, free_port};
use flotilla_client::{FleetClient, FleetConfig};
use flotilla_testkit::Chromium;
use flotilla_wire::WorldId;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const WORLD: &str = "arena-1";

/// Positions (seq) of the world and the Rust replica's digest there.
type Digests = Arc<Mutex<HashMap<u64, u64>>>;

/// Keeps a Rust replica of `WORLD` from the raw front-ends and records its digest at every
/// position it sees, until `stop`.
fn record_digests(
    frontends: Vec<SocketAddr>,
    join_tokens: Vec<bytes::Bytes>,
    stop: Arc<AtomicBool>,
) -> (Digests, std::thread::JoinHandle<()>) {
    let digests: Digests = Arc::default();
    let sink = Arc::clone(&digests);
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut config = FleetConfig::new(frontends);
            config.client.join_tokens = join_tokens;
            let client = FleetClient::connect(config).await.unwrap();
            let world = WorldId::new(WORLD).unwrap();
            client.subscribe(world.clone(), None).unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let Some((Some(position), digest)) =
                    client.with_replica(&world, |replica| (replica.position(), replica.digest()))
                {
                    sink.lock().unwrap().insert(position.seq, digest);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            client.close();
            client.closed().await;
        });
    });
    (digests, thread)
}

/// What the page shows.
#[derive(Debug)]
struct PageState {
    status: String,
    frontend: String,
    switches: u64,
    seq: Option<u64>,
    digest: String,
}

fn page_state(page: &flotilla_testkit::Page) -> PageState {
    let value = page
        .eval(
            "JSON.stringify(['status','frontend','switches','seq','digest']\
             .map(id => document.getElementById(id).textContent))",
        )
        .unwrap();
    let fields: Vec<String> = serde_json::from_str(value.as_str().unwrap()).unwrap();
    PageState {
        status: fields[0].clone(),
        frontend: fields[1].clone(),
        switches: fields[2].parse().unwrap_or(0),
        seq: fields[3].parse().ok(),
        digest: fields[4].clone(),
    }
}

/// Samples the page until `wanted` of its (seq, digest) pairs were found in the Rust
/// replica's record and equal; any difference fails.
fn digests_agree(page: &flotilla_testkit::Page, digests: &Digests, wanted: usize, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut matched = 0;
    while matched < wanted {
        assert!(
            Instant::now() < deadline,
            "{when}: only {matched} of {wanted} page positions could be compared"
        );
        let state = page_state(page);
        if state.status == "live"
            && let Some(seq) = state.seq
            && let Some(expected) = digests.lock().unwrap().get(&seq).copied()
        {
            assert_eq!(
                state.digest,
                format!("{expected:016x}"),
                "{when}: the page's replica differs from the Rust replica at seq {seq}"
            );
            matched += 1;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

#[test]
fn the_browser_page_keeps_the_game_s_replica_and_moves_on_when_its_front_end_dies() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("token.key");
    std::fs::write(&key, format!("{}\n", "5a".repeat(32))).unwrap();
    let game_port = free_port();
    let _game = start_game(game_port);
    let raw: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let ws: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let urls: Vec<String> = ws
        .iter()
        .map(|port| format!("ws://127.0.0.1:{port}/ws"))
        .collect();
    let mut frontends: Vec<Option<Running>> = (0..3)
        .map(|index| {
            Some(Running(
                Command::new(BIN)
                    .args(["frontend", "--listen", &format!("127.0.0.1:{}", raw[index])])
                    .args(["--game", &format!("127.0.0.1:{game_port}")])
                    .args(["--ws", &format!("127.0.0.1:{}", ws[index])])
                    .args(["--id", &format!("fe-{index}")])
                    .arg("--token-key-file")
                    .arg(&key)
                    .args(["--web-frontends", &urls.join(",")])
                    .args(["--web-world", WORLD, "--seconds", "120"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            ))
        })
        .collect();
    for port in &ws {
        common::wait_for_port(&format!("127.0.0.1:{port}"), Duration::from_secs(10));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (digests, recorder) = record_digests(
        raw.iter()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], *port)))
            .collect(),
        Vec::new(),
        Arc::clone(&stop),
    );

    let browser = Chromium::launch().unwrap();
    let page = browser
        .open(&format!("http://127.0.0.1:{}/", ws[0]))
        .unwrap();
    wait_live(&page, "the page");
    digests_agree(&page, &digests, 5, "first front-end");

    // Kill the page's front-end; it must move on to another one.
    let before = page_state(&page);
    let victim = urls
        .iter()
        .position(|url| *url == before.frontend)
        .unwrap_or_else(|| panic!("the page names an unknown front-end: {before:?}"));
    let killed_at = Instant::now();
    drop(frontends[victim].take());
    page.wait_for(
        &format!(
            "document.getElementById('status').textContent === 'live' && \
             document.getElementById('frontend').textContent !== '{}'",
            before.frontend
        ),
        Duration::from_secs(15),
    )
    .unwrap_or_else(|error| {
        panic!(
            "the page did not move on: {error}; console: {:?}",
            page.console()
        )
    });
    let moved_after = killed_at.elapsed();
    let after = page_state(&page);
    assert!(
        after.switches > before.switches,
        "{before:?} then {after:?}"
    );
    assert!(urls.contains(&after.frontend), "{after:?}");
    eprintln!(
        "the page moved from {} to {} in {moved_after:?}",
        before.frontend, after.frontend
    );
    digests_agree(&page, &digests, 5, "after the failover");

    let shot = std::env::var_os("FLOTILLA_OBSERVER_SCREENSHOT")
        .map_or_else(|| dir.path().join("observer.png"), Into::into);
    page.screenshot(&shot).unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    no_script_errors(&page);

    stop.store(true, Ordering::Relaxed);
    recorder.join().unwrap();
}

/// Starts `flotilla game` with one world on `port` (for two minutes at most).
fn start_game(port: u16) -> Running {
    Running(
        Command::new(BIN)
            .args(["game", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--worlds", "1", "--npcs", "12", "--seconds", "120"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Waits until `page` shows a live replica (`what` names it in the failure).
fn wait_live(page: &flotilla_testkit::Page, what: &str) {
    page.wait_for(
        "document.getElementById('status').textContent === 'live' && \
         document.getElementById('seq').textContent !== ''",
        Duration::from_secs(30),
    )
    .unwrap_or_else(|error| {
        panic!(
            "{what} never went live: {error}; console: {:?}",
            page.console()
        )
    });
}

/// Asserts that `page` logged no script error.
fn no_script_errors(page: &flotilla_testkit::Page) {
    let errors: Vec<String> = page
        .console()
        .into_iter()
        .filter(|line| line.contains("Uncaught") || line.contains("TypeError"))
        .collect();
    assert!(errors.is_empty(), "script errors: {errors:?}");
}

/// Runs the binary with `args` and returns its standard output (it must succeed).
fn output_of(args: &[&str]) -> String {
    let output = Command::new(BIN).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "flotilla {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_browser_page_watches_with_a_join_token_where_observers_need_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("join.pem");
    let key_path = key.to_str().unwrap();
    let public = output_of(&["keygen", "--join", "--out", key_path]);
    let token = output_of(&[
        "join-token",
        "--key",
        key_path,
        "--world",
        WORLD,
        "--role",
        "observer",
        "--ttl",
        "600",
        "--subject",
        "page",
    ]);
    let game_port = free_port();
    let _game = start_game(game_port);
    let (raw, ws) = (free_port(), free_port());
    let url = format!("ws://127.0.0.1:{ws}/ws");
    let _frontend = Running(
        Command::new(BIN)
            .args(["frontend", "--listen", &format!("127.0.0.1:{raw}")])
            .args(["--game", &format!("127.0.0.1:{game_port}")])
            .args(["--ws", &format!("127.0.0.1:{ws}")])
            .args(["--join-key", &public, "--no-anonymous-observers"])
            .args(["--web-frontends", &url, "--web-world", WORLD])
            .args(["--seconds", "120"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_for_port(&format!("127.0.0.1:{ws}"), Duration::from_secs(10));
    let stop = Arc::new(AtomicBool::new(false));
    let (digests, recorder) = record_digests(
        vec![SocketAddr::from(([127, 0, 0, 1], raw))],
        vec![flotilla_client::join_token_from_text(&token).unwrap()],
        Arc::clone(&stop),
    );
    let browser = Chromium::launch().unwrap();

    // Without a token the front-end refuses the watch, and the page says why.
    let refused = browser.open(&format!("http://127.0.0.1:{ws}/")).unwrap();
    refused
        .wait_for(
            "document.getElementById('errors').textContent.includes('NotAllowed')",
            Duration::from_secs(20),
        )
        .unwrap_or_else(|error| {
            panic!(
                "the page without a token was not refused: {error}; status {:?}",
                page_state(&refused)
            )
        });
    assert_ne!(page_state(&refused).status, "live");

    // With the token in the fragment it watches, and its replica is the game's.
    let page = browser
        .open(&format!("http://127.0.0.1:{ws}/#join={token}"))
        .unwrap();
    wait_live(&page, "the page with a token");
    digests_agree(&page, &digests, 5, "with a join token");
    no_script_errors(&page);
    stop.store(true, Ordering::Relaxed);
    recorder.join().unwrap();
}
