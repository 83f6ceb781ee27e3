//! Join tokens through the binary: `flotilla keygen --join` makes the operator's key,
//! `flotilla join-token` signs tokens a front-end verifies, `flotilla frontend --join-key
//! --no-anonymous-observers` refuses a watcher without a token and serves one with
//! `flotilla watch --join-token`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Running, free_port, wait_for_port};
use flotilla_frontend::JoinKey;
use flotilla_wire::{JoinToken, Role, WorldId, join_token_from_text};

fn flotilla() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
}

/// Runs `cmd`, checks that it succeeded, returns its standard output.
fn succeed(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `cmd`, checks that it failed, returns its standard error.
fn fail(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

/// A signing key in a temporary directory: the directory, the key file, the public key.
fn operator_key() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("join.pem");
    let public = succeed(flotilla().args(["keygen", "--join", "--out"]).arg(&key));
    (dir, key, public.trim().to_owned())
}

fn join_token(key: &std::path::Path, world: &str, role: &str) -> String {
    succeed(
        flotilla()
            .args(["join-token", "--key"])
            .arg(key)
            .args(["--world", world, "--role", role, "--ttl", "600"])
            .args(["--subject", "ada"]),
    )
    .trim()
    .to_owned()
}

#[test]
fn keygen_join_and_join_token_make_tokens_the_front_end_verifies() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_dir, key, public) = operator_key();
    assert_eq!(public.len(), 64, "{public}");
    let public = JoinKey::from_hex(&public).unwrap();
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    // Never overwritten.
    let error = fail(flotilla().args(["keygen", "--join", "--out"]).arg(&key));
    assert!(error.contains("join.pem"), "{error}");
    fail(flotilla().args(["keygen", "--join"]));

    let text = join_token(&key, "arena-1", "observer");
    let token = join_token_from_text(&text).unwrap();
    let decoded = JoinToken::decode(&token).unwrap();
    let claims = decoded.claims();
    assert_eq!(claims.world, WorldId::new("arena-1").unwrap());
    assert_eq!(claims.role, Role::Observer);
    assert_eq!(claims.subject, "ada");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 590..=now + 610).contains(&claims.expires_unix),
        "{claims:?}"
    );
    assert_eq!(
        flotilla_frontend::join::verify(&[public], &token, Some(now)).unwrap(),
        claims.clone()
    );

    // Loud errors.
    let base = |args: &[&str]| {
        let mut cmd = flotilla();
        cmd.args(["join-token", "--key"]).arg(&key).args(args);
        cmd
    };
    let error = fail(&mut base(&[
        "--world",
        "a",
        "--role",
        "admin",
        "--subject",
        "x",
    ]));
    assert!(error.contains("observer"), "{error}");
    fail(&mut base(&["--world", "$directory", "--subject", "x"]));
    fail(&mut base(&["--world", "a", "--subject", &"x".repeat(65)]));
    let error = fail(
        flotilla()
            .args(["join-token", "--key", "/nonexistent/key.pem"])
            .args(["--world", "a", "--subject", "x"]),
    );
    assert!(error.contains("/nonexistent/key.pem"), "{error}");
    let frontend = |args: &[&str]| {
        let mut cmd = flotilla();
        cmd.args([
            "frontend",
            "--listen",
            "127.0.0.1:0",
            "--game",
            "127.0.0.1:1",
        ])
        .args(["--seconds", "0.3"])
        .args(args);
        cmd
    };
    let error = fail(&mut frontend(&["--join-key", "abcd"]));
    assert!(error.contains("--join-key"), "{error}");
    let error = fail(&mut frontend(&["--no-anonymous-observers"]));
    assert!(error.contains("--join-key"), "{error}");
    succeed(&mut frontend(&["--join-key", &public.to_hex()]));
}

/// A game server and a front-end checking tokens of `public`, with anonymous observers
/// off, serving `arena-1`; the front-end's address.
fn fleet(public: &str) -> (Running, Running, String) {
    let game_addr = format!("127.0.0.1:{}", free_port());
    let game = Running(
        flotilla()
            .args(["game", "--listen", &game_addr, "--seconds", "30"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let frontend_addr = format!("127.0.0.1:{}", free_port());
    let frontend = Running(
        flotilla()
            .args(["frontend", "--listen", &frontend_addr, "--game", &game_addr])
            .args(["--seconds", "30", "--join-key", public])
            .arg("--no-anonymous-observers")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(&frontend_addr, Duration::from_secs(10));
    (game, frontend, frontend_addr)
}

#[test]
fn a_front_end_with_join_keys_refuses_a_watcher_without_a_token() {
    let (_dir, _key, public) = operator_key();
    let (_game, _frontend, addr) = fleet(&public);
    // Retried while the front-end's game link comes up (`Unavailable` is waited out by
    // the client; the refusal comes first anyway: the token is checked before the world).
    let out = flotilla()
        .args(["watch", "arena-1", "--frontends", &addr, "--seconds", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("does not let this client watch \"arena-1\"")
            && error.contains("no join token for arena-1"),
        "{error}"
    );
}

#[test]
fn a_front_end_with_join_keys_serves_a_watcher_with_a_token() {
    let (_dir, key, public) = operator_key();
    let (_game, _frontend, addr) = fleet(&public);
    let token = join_token(&key, "arena-1", "observer");
    let mut watch = Running(
        flotilla()
            .args(["watch", "arena-1", "--frontends", &addr, "--seconds", "10"])
            .args(["--json", "--join-token", &token])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(watch.0.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let event = line["event"].as_str().unwrap().to_owned();
        if event == "joined" {
            assert_eq!(line["world"], "arena-1");
            assert_eq!(line["role"], "observer");
        }
        seen.push(event.clone());
        if event == "snapshot" {
            break;
        }
    }
    assert!(
        seen.contains(&"joined".to_owned()) && seen.contains(&"snapshot".to_owned()),
        "{seen:?}"
    );
}
