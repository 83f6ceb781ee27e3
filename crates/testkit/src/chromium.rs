//! A headless Chromium (Debian package `chromium`, installed by
//! `scripts/install-peers.sh`) driven over the Chrome DevTools Protocol, so that tests can
//! open a page served by flotilla, run JavaScript in it, wait for a condition and take
//! screenshots.
//!
//! The command line:
//!
//! ```text
//! chromium --headless=new --no-sandbox --disable-gpu --remote-debugging-port=0
//!          --user-data-dir=DIR/profile --no-first-run --no-default-browser-check
//!          --disable-extensions --disable-background-networking --disable-sync
//!          --disable-component-update --disable-default-apps --mute-audio
//!          --hide-scrollbars --window-size=1400,900 about:blank
//! ```
//!
//! in its own process group, with the profile in a temporary folder; the browser's
//! WebSocket URL is read from its `DevTools listening on ws://…` line on stderr. The
//! protocol client is small and synchronous: a WebSocket (RFC 6455, client side, over
//! `std::net::TcpStream`) carrying JSON commands with ids; each page is a target created
//! with `Target.createTarget` and attached in flat mode (`Target.attachToTarget`
//! with `flatten`), so every command names its session. Every wait is bounded
//! ([`COMMAND_TIMEOUT`] per command, a caller-given timeout for [`Page::wait_for`]).
//! Dropping [`Chromium`] kills the whole process group (the browser and its renderer,
//! GPU and utility processes) and waits for the browser.
//!
//! ```no_run
//! # fn main() -> Result<(), flotilla_testkit::Error> {
//! use std::time::Duration;
//! let browser = flotilla_testkit::Chromium::launch()?;
//! let page = browser.open("http://127.0.0.1:7480/")?;
//! page.wait_for("document.querySelectorAll('tbody tr').length > 0", Duration::from_secs(10))?;
//! let rows = page.eval("document.querySelectorAll('tbody tr').length")?;
//! page.screenshot(std::path::Path::new("page.png"))?;
//! # let _ = rows; Ok(()) }
//! ```

use crate::install::system_program;
use crate::{Error, ensure_peers_installed};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long the browser may take to print its DevTools URL.
pub const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one protocol command may take (navigations and screenshots included).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`Page::wait_for`] evaluates its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Lines of the browser's stderr kept for error messages.
const STDERR_LINES: usize = 60;
/// Console messages and exceptions kept per page.
const CONSOLE_LINES: usize = 500;
/// Largest WebSocket message accepted (a full-page screenshot of a big page is a few MB).
const MAX_MESSAGE: usize = 256 << 20;
/// The viewport pages get unless [`Page::set_viewport`] changes it.
const DEFAULT_VIEWPORT: (u32, u32) = (1400, 900);

/// The Chromium program: `$FLOTILLA_CHROMIUM`, `/usr/bin/chromium`, or `chromium` in
/// `$PATH` (after running the install script when it is missing).
pub fn chromium_program() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("FLOTILLA_CHROMIUM").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let debian = PathBuf::from("/usr/bin/chromium");
    if debian.is_file() {
        return Ok(debian);
    }
    if let Ok(path) = system_program("chromium") {
        return Ok(path);
    }
    ensure_peers_installed()?;
    if debian.is_file() {
        return Ok(debian);
    }
    system_program("chromium")
}

fn cdp_error(reason: impl Into<String>) -> Error {
    Error::Program {
        program: "chromium",
        reason: reason.into(),
        output: String::new(),
    }
}

/// A running headless Chromium (see the module docs). Dropping it kills the browser's
/// process group, waits for the browser and deletes its profile folder.
pub struct Chromium {
    connection: Arc<Mutex<Connection>>,
    child: Child,
    stderr: Arc<Mutex<VecDeque<String>>>,
    ws_url: String,
    // Last: the profile outlives the process.
    dir: TempDir,
}

impl std::fmt::Debug for Chromium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chromium")
            .field("pid", &self.child.id())
            .field("ws_url", &self.ws_url)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Chromium {
    /// Finds (or installs) Chromium, starts it headless with a fresh profile and connects
    /// to its DevTools WebSocket, within [`LAUNCH_TIMEOUT`].
    pub fn launch() -> Result<Chromium, Error> {
        let program = chromium_program()?;
        let dir = tempfile::Builder::new()
            .prefix("flotilla-chromium-")
            .tempdir()
            .map_err(Error::io("creating Chromium's temporary folder"))?;
        let profile = dir.path().join("profile");
        let mut command = Command::new(&program);
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args([
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--disable-component-update",
                "--disable-default-apps",
                "--mute-audio",
                "--hide-scrollbars",
                "--window-size=1400,900",
                "about:blank",
            ])
            .env("TMPDIR", dir.path())
            .current_dir(dir.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(Error::io(format!(
            "starting Chromium ({})",
            program.display()
        )))?;
        let stderr_pipe = child.stderr.take();
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let (url_tx, url_rx) = mpsc::channel();
        if let Some(pipe) = stderr_pipe {
            let lines = Arc::clone(&stderr);
            // Reads stderr to its end (a full pipe would block the browser), keeping the
            // last lines and reporting the DevTools URL once.
            std::thread::spawn(move || {
                let mut url_tx = Some(url_tx);
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Some(at) = line.find("ws://")
                        && line.contains("DevTools listening on")
                        && let Some(tx) = url_tx.take()
                    {
                        let _ = tx.send(line[at..].trim().to_string());
                    }
                    if let Ok(mut kept) = lines.lock() {
                        if kept.len() >= STDERR_LINES {
                            kept.pop_front();
                        }
                        kept.push_back(line);
                    }
                }
            });
        }
        let mut browser = Chromium {
            connection: Arc::new(Mutex::new(Connection::placeholder())),
            child,
            stderr,
            ws_url: String::new(),
            dir,
        };
        let ws_url = match url_rx.recv_timeout(LAUNCH_TIMEOUT) {
            Ok(url) => url,
            Err(_) => {
                let status = browser.child.try_wait().ok().flatten();
                return Err(match status {
                    Some(status) => Error::Exited {
                        peer: "chromium",
                        status: status.to_string(),
                        stderr: browser.stderr_tail(),
                    },
                    None => Error::NotReady {
                        peer: "chromium",
                        waited: LAUNCH_TIMEOUT,
                        reason: "no \"DevTools listening on ws://\" line on stderr".into(),
                        stderr: browser.stderr_tail(),
                    },
                });
            }
        };
        let socket = WebSocket::connect(&ws_url).map_err(|e| Error::Program {
            program: "chromium",
            reason: format!("connecting to {ws_url}: {e}"),
            output: browser.stderr_tail(),
        })?;
        browser.ws_url = ws_url;
        browser.connection = Arc::new(Mutex::new(Connection::new(socket)));
        Ok(browser)
    }

    /// The browser's DevTools WebSocket URL.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// The browser's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the browser wrote on stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr
            .lock()
            .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// Opens a new tab with a [`DEFAULT_VIEWPORT`]-sized viewport, navigates it to `url`
    /// and waits until the document is loaded (`readyState` is `complete`).
    pub fn open(&self, url: &str) -> Result<Page, Error> {
        let target = self.browser_command(
            "Target.createTarget",
            json!({"url": "about:blank", "newWindow": false}),
        )?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or_else(|| cdp_error(format!("Target.createTarget answered {target}")))?
            .to_string();
        let attached = self.browser_command(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| cdp_error(format!("Target.attachToTarget answered {attached}")))?
            .to_string();
        let page = Page {
            connection: Arc::clone(&self.connection),
            session,
            target_id,
        };
        page.command("Page.enable", json!({}))?;
        page.command("Runtime.enable", json!({}))?;
        page.command("Log.enable", json!({}))?;
        page.set_viewport(DEFAULT_VIEWPORT.0, DEFAULT_VIEWPORT.1)?;
        page.navigate(url)?;
        Ok(page)
    }

    fn browser_command(&self, method: &str, params: Value) -> Result<Value, Error> {
        lock(&self.connection)?.command(None, method, params, COMMAND_TIMEOUT)
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        if let Ok(mut connection) = self.connection.lock() {
            connection.close();
        }
        // The browser was started as the leader of its own process group: kill the group
        // (renderers, GPU and utility processes too). std has no killpg; `kill` has.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lock(
    connection: &Arc<Mutex<Connection>>,
) -> Result<std::sync::MutexGuard<'_, Connection>, Error> {
    connection
        .lock()
        .map_err(|_| cdp_error("the DevTools connection was poisoned by a panic"))
}

/// One tab of a [`Chromium`], attached over the DevTools protocol.
pub struct Page {
    connection: Arc<Mutex<Connection>>,
    session: String,
    target_id: String,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("session", &self.session)
            .field("target_id", &self.target_id)
            .finish()
    }
}

impl Page {
    /// Sends one DevTools command to this page and returns its `result`.
    pub fn command(&self, method: &str, params: Value) -> Result<Value, Error> {
        lock(&self.connection)?.command(Some(&self.session), method, params, COMMAND_TIMEOUT)
    }

    /// Navigates to `url` and waits (at most [`COMMAND_TIMEOUT`]) until the new document
    /// is loaded.
    pub fn navigate(&self, url: &str) -> Result<(), Error> {
        let answer = self.command("Page.navigate", json!({ "url": url }))?;
        if let Some(error) = answer["errorText"].as_str().filter(|e| !e.is_empty()) {
            return Err(cdp_error(format!("navigating to {url}: {error}")));
        }
        self.wait_for(
            &format!(
                "document.readyState === 'complete' && location.href.startsWith({})",
                json!(url.split('#').next().unwrap_or(url))
            ),
            COMMAND_TIMEOUT,
        )
        .map(|_| ())
    }

    /// Evaluates a JavaScript expression in the page (promises are awaited) and returns
    /// its value as JSON (`null` for `undefined` and for values JSON cannot hold). A
    /// thrown exception is an error with its text.
    pub fn eval(&self, expression: &str) -> Result<Value, Error> {
        let answer = self.command(
            "Runtime.evaluate",
            json!({
                "expression": expression,
                "returnByValue": true,
                "awaitPromise": true,
                "userGesture": true,
                "timeout": u64::try_from(COMMAND_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
            }),
        )?;
        if let Some(details) = answer.get("exceptionDetails") {
            let text = details["exception"]["description"]
                .as_str()
                .or_else(|| details["text"].as_str())
                .unwrap_or("exception");
            return Err(cdp_error(format!("evaluating {expression:?}: {text}")));
        }
        Ok(answer["result"]["value"].clone())
    }

    /// Evaluates `condition` every 50 ms until it is truthy and returns its value; after
    /// `timeout` fails with the last value and the page's console.
    pub fn wait_for(&self, condition: &str, timeout: Duration) -> Result<Value, Error> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            match self.eval(condition) {
                Ok(value) => {
                    if truthy(&value) {
                        return Ok(value);
                    }
                    last = value;
                }
                // A navigation can destroy the context mid-evaluation: try again.
                Err(e) => last = Value::String(e.to_string()),
            }
            if Instant::now() >= deadline {
                return Err(Error::Program {
                    program: "chromium",
                    reason: format!("waited {timeout:?} for {condition:?}; last value: {last}"),
                    output: self.console().join("\n"),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sets the viewport (CSS pixels, device scale factor 1).
    pub fn set_viewport(&self, width: u32, height: u32) -> Result<(), Error> {
        self.command(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .map(|_| ())
    }

    /// Writes a PNG of the viewport to `path` (its folder is created).
    pub fn screenshot(&self, path: &Path) -> Result<(), Error> {
        self.capture(path, json!({"format": "png"}))
    }

    /// Writes a PNG of the whole page (beyond the viewport, at most 4,000 CSS pixels
    /// high) to `path`.
    pub fn screenshot_full(&self, path: &Path) -> Result<(), Error> {
        let metrics = self.command("Page.getLayoutMetrics", json!({}))?;
        let size = &metrics["cssContentSize"];
        let width = size["width"].as_f64().unwrap_or(1400.0).ceil();
        let height = size["height"].as_f64().unwrap_or(900.0).ceil().min(4000.0);
        self.capture(
            path,
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            }),
        )
    }

    fn capture(&self, path: &Path, params: Value) -> Result<(), Error> {
        let answer = self.command("Page.captureScreenshot", params)?;
        let data = answer["data"]
            .as_str()
            .ok_or_else(|| cdp_error("Page.captureScreenshot answered no data"))?;
        let png = base64_decode(data)
            .ok_or_else(|| cdp_error("Page.captureScreenshot answered bad base64"))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(Error::io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(path, png).map_err(Error::io(format!("writing {}", path.display())))
    }

    /// What the page logged: console calls, uncaught exceptions and browser log entries
    /// (failed loads, Content-Security-Policy violations), oldest first, one line each.
    pub fn console(&self) -> Vec<String> {
        let Ok(mut connection) = self.connection.lock() else {
            return Vec::new();
        };
        connection.drain_events();
        connection
            .console
            .iter()
            .filter(|(session, _)| *session == self.session)
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// The page's DevTools target id.
    pub fn target_id(&self) -> &str {
        &self.target_id
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

// ---------------------------------------------------------------------------------------
// The DevTools connection: ids, answers, events.

struct Connection {
    socket: Option<WebSocket>,
    next_id: u64,
    /// (session id, line) of console messages, exceptions and log entries.
    console: VecDeque<(String, String)>,
}

impl Connection {
    fn placeholder() -> Self {
        Connection {
            socket: None,
            next_id: 1,
            console: VecDeque::new(),
        }
    }

    fn new(socket: WebSocket) -> Self {
        Connection {
            socket: Some(socket),
            ..Connection::placeholder()
        }
    }

    fn close(&mut self) {
        if let Some(mut socket) = self.socket.take() {
            let _ = socket.send_frame(OP_CLOSE, &[]);
        }
    }

    fn command(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let socket = self
            .socket
            .as_mut()
            .ok_or_else(|| cdp_error("not connected to the browser"))?;
        socket
            .send_frame(OP_TEXT, message.to_string().as_bytes())
            .map_err(|e| cdp_error(format!("sending {method}: {e}")))?;
        let deadline = Instant::now() + timeout;
        loop {
            let socket = self
                .socket
                .as_mut()
                .ok_or_else(|| cdp_error("not connected to the browser"))?;
            let text = socket
                .read_message(deadline)
                .map_err(|e| cdp_error(format!("waiting for the answer to {method}: {e}")))?;
            let Some(text) = text else {
                return Err(cdp_error(format!(
                    "no answer to {method} within {timeout:?}"
                )));
            };
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| cdp_error(format!("a DevTools message is not JSON ({e}): {text}")))?;
            if value["id"].as_u64() == Some(id) {
                if let Some(error) = value.get("error") {
                    return Err(cdp_error(format!("{method} failed: {error}")));
                }
                return Ok(value["result"].clone());
            }
            self.event(&value);
        }
    }

    /// Reads the events already received, without waiting.
    fn drain_events(&mut self) {
        loop {
            let Some(socket) = self.socket.as_mut() else {
                return;
            };
            match socket.read_message(Instant::now()) {
                Ok(Some(text)) => {
                    if let Ok(value) = serde_json::from_str::<Value>(&text) {
                        self.event(&value);
                    }
                }
                Ok(None) | Err(_) => return,
            }
        }
    }

    fn event(&mut self, value: &Value) {
        let session = value["sessionId"].as_str().unwrap_or("").to_string();
        let params = &value["params"];
        let line = match value["method"].as_str() {
            Some("Runtime.consoleAPICalled") => {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .map(|args| {
                        args.iter()
                            .map(|a| match &a["value"] {
                                Value::String(s) => s.clone(),
                                Value::Null => a["description"].as_str().unwrap_or("").to_string(),
                                other => other.to_string(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                format!(
                    "console.{}: {}",
                    params["type"].as_str().unwrap_or("log"),
                    args.join(" ")
                )
            }
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                format!(
                    "exception: {}",
                    details["exception"]["description"]
                        .as_str()
                        .or_else(|| details["text"].as_str())
                        .unwrap_or("?")
                )
            }
            Some("Log.entryAdded") => {
                let entry = &params["entry"];
                format!(
                    "log.{} ({}): {}{}",
                    entry["level"].as_str().unwrap_or("?"),
                    entry["source"].as_str().unwrap_or("?"),
                    entry["text"].as_str().unwrap_or(""),
                    entry["url"]
                        .as_str()
                        .map(|u| format!(" [{u}]"))
                        .unwrap_or_default()
                )
            }
            _ => return,
        };
        if self.console.len() >= CONSOLE_LINES {
            self.console.pop_front();
        }
        self.console.push_back((session, line));
    }
}

// ---------------------------------------------------------------------------------------
// A minimal WebSocket client (RFC 6455): text messages, fragmentation, ping/pong, close.

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

struct WebSocket {
    stream: TcpStream,
    /// Received bytes not yet parsed into frames.
    buffer: Vec<u8>,
    /// The payload of a fragmented message so far.
    partial: Vec<u8>,
    mask_state: u64,
}

impl WebSocket {
    /// Connects to `ws://HOST:PORT/PATH` and completes the opening handshake.
    fn connect(url: &str) -> std::io::Result<WebSocket> {
        let invalid = |what: &str| std::io::Error::new(ErrorKind::InvalidInput, what.to_string());
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| invalid("not a ws:// URL"))?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let addrs: Vec<std::net::SocketAddr> =
            std::net::ToSocketAddrs::to_socket_addrs(host)?.collect();
        let addr = addrs.first().ok_or_else(|| invalid("no address"))?;
        let mut stream = TcpStream::connect_timeout(addr, Duration::from_secs(10))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let seed = seed();
        let key_bytes: Vec<u8> = (0..16u32)
            .map(|i| (seed.rotate_left(i * 4) >> 7) as u8 ^ (i as u8).wrapping_mul(37))
            .collect();
        let key = base64_encode(&key_bytes);
        // No Origin header: Chromium accepts DevTools connections without one.
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if buffer.len() > 64 * 1024 {
                return Err(invalid("handshake answer too long"));
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "connection closed during the handshake",
                ));
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(std::io::Error::other(format!(
                "handshake refused: {}",
                head.lines().next().unwrap_or("")
            )));
        }
        buffer.drain(..head_end);
        Ok(WebSocket {
            stream,
            buffer,
            partial: Vec::new(),
            mask_state: seed | 1,
        })
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64: masking needs unpredictability against proxies only.
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        (x as u32).to_be_bytes()
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if let Ok(len16) = u16::try_from(len) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&len16.to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = self.next_mask();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame)?;
        self.stream.flush()
    }

    /// The next complete text message, or `None` when none arrived by `deadline`.
    fn read_message(&mut self, deadline: Instant) -> std::io::Result<Option<String>> {
        loop {
            while let Some((fin, opcode, payload)) = self.parse_frame()? {
                match opcode {
                    OP_PING => self.send_frame(OP_PONG, &payload)?,
                    OP_PONG => {}
                    OP_CLOSE => {
                        return Err(std::io::Error::new(
                            ErrorKind::ConnectionAborted,
                            "the browser closed the DevTools connection",
                        ));
                    }
                    OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                        self.partial.extend_from_slice(&payload);
                        if self.partial.len() > MAX_MESSAGE {
                            return Err(std::io::Error::other("DevTools message too large"));
                        }
                        if fin {
                            let message = std::mem::take(&mut self.partial);
                            return Ok(Some(String::from_utf8_lossy(&message).into_owned()));
                        }
                    }
                    other => {
                        return Err(std::io::Error::other(format!(
                            "unknown WebSocket opcode {other:#x}"
                        )));
                    }
                }
            }
            let now = Instant::now();
            // At least a moment, so that an already-due deadline still reads what arrived.
            let wait = deadline
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(wait))?;
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the browser closed the DevTools connection",
                    ));
                }
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes one complete frame off the buffer: (FIN, opcode, unmasked payload).
    fn parse_frame(&mut self) -> std::io::Result<Option<(bool, u8, Vec<u8>)>> {
        let b = &self.buffer;
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        let opcode = b[0] & 0x0f;
        let masked = b[1] & 0x80 != 0;
        let (len, mut at) = match b[1] & 0x7f {
            126 => {
                if b.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([b[2], b[3]])), 4)
            }
            127 => {
                if b.len() < 10 {
                    return Ok(None);
                }
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(n), 10)
            }
            n => (u64::from(n), 2),
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_MESSAGE)
            .ok_or_else(|| std::io::Error::other("WebSocket frame too large"))?;
        let mask = if masked {
            if b.len() < at + 4 {
                return Ok(None);
            }
            let m = [b[at], b[at + 1], b[at + 2], b[at + 3]];
            at += 4;
            Some(m)
        } else {
            None
        };
        if b.len() < at + len {
            return Ok(None);
        }
        let mut payload = b[at..at + len].to_vec();
        if let Some(m) = mask {
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= m[i % 4];
            }
        }
        self.buffer.drain(..at + len);
        Ok(Some((fin, opcode, payload)))
    }
}

/// A seed from the clock and the process id (the WebSocket key and masks need no more).
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for input in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let encoded = base64_encode(input);
            assert_eq!(base64_decode(&encoded).as_deref(), Some(input));
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm9vYg=="), Some(b"foob".to_vec()));
        assert_eq!(base64_decode("Zm9v!"), None);
    }

    #[test]
    fn truthiness_is_javascript_like() {
        assert!(!truthy(&json!(null)));
        assert!(!truthy(&json!(0)));
        assert!(!truthy(&json!("")));
        assert!(!truthy(&json!(false)));
        assert!(truthy(&json!(3)));
        assert!(truthy(&json!("x")));
        assert!(truthy(&json!([])));
    }
}
