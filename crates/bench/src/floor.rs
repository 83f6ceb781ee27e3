//! The floor: the freshest replicas one TCP connection per observer allows on this
//! machine, measured with the big final's observers (`flotilla bench bigfinal --floor`).
//!
//! A front-end's fan-out cannot do less than write each observer the world's latest
//! state once per pass. The floor writer does exactly that and nothing else: no game link,
//! no machine, no queues, no timers, no runtime. One thread per process, plain
//! non-blocking `send` calls in a loop over its connections, each given the latest
//! commit's `ChangeBatch` frame once (a frame cut short by a full socket is finished
//! before the next). Its world commits `rate` times a second on a fixed schedule, each
//! commit stamped with its *scheduled* time, so a writer that falls behind shows it as
//! lag, as a front-end behind a game server does.
//!
//! The same observer workers (same source addresses, same pacing, same lean reader) read
//! it, so its lag and state age are what the big final's would be with a front-end that
//! costs nothing but its system calls. A target the floor misses on this machine, no
//! front-end can meet on it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_wire::{FrontendToClient, Message, PROTOCOL_VERSION, SnapshotPart, WorldId};
use flotilla_world::{ChangeBatch, Snapshot};
use serde::Serialize;
use serde_json::json;

use crate::BenchError;
use crate::bigfinal::BigFinalConfig;
use crate::lean::{payload, unix_now_ns};
use crate::observe::ReportTotals;
use crate::procstat::{CpuMeter, clock_ticks_per_second};
use crate::stats::Percentiles;
use crate::workers::{ObserverGroup, Worker, WorkerLauncher, print_line, serve_commands};

/// The key every commit of the floor's world sets (one key: the latest state is one value).
const KEY: &[u8] = b"k";

/// Connections written between two looks at the clock and the listener.
const STEP: usize = 64;

/// How often the writer reads each welcomed connection, to take the observers' pings off
/// the socket (they need no answer here). Rarely: a ping every 20 s is a few bytes a
/// minute, and a read per connection every few seconds would cost the floor system calls
/// a front-end does not make (it reads only sockets that have something).
const READ_EVERY: Duration = Duration::from_secs(60);

/// The floor writers' figures, side by side with the front-ends' in a big-final report.
#[derive(Debug, Clone, Serialize)]
pub struct FloorFigures {
    /// Observers subscribed to the floor writers.
    pub subscribed: usize,
    /// Seconds until they all were.
    pub seconds_to_subscribe: f64,
    /// Commit-to-receipt lag of every delivery in the window.
    pub lag: Percentiles,
    /// The age of the newest state each observer held, sampled every 100 ms (as in the
    /// big final).
    pub state_age: Percentiles,
    /// Observers holding their writer's last commit after the writers stopped committing
    /// (a census every 250 ms until all do, for at most 30 s).
    pub converged: u64,
    /// Per writer process: CPU (percent of one core) over the window.
    pub cpu_percent: Vec<f64>,
    /// Per writer process: `send` calls that wrote something, per second.
    pub writes_per_second: Vec<f64>,
    /// Per writer process: microseconds of its CPU per write.
    pub cpu_us_per_write: Vec<f64>,
}

/// One observer connection of a floor writer.
struct Conn {
    stream: TcpStream,
    /// The handshake answer (`Welcome` and the snapshot) went out.
    welcomed: bool,
    /// The newest commit written (or queued in `unsent`).
    sent: u64,
    /// The rest of a frame the socket took only part of.
    unsent: Bytes,
    /// When to read the connection next.
    read_at: Instant,
}

/// What one turn of a connection came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Something was written.
    Wrote,
    /// Nothing to do: the connection holds the latest commit.
    Done,
    /// Something waits that a later pass must retry: a hello not yet read, or bytes the
    /// full socket did not take.
    Waiting,
}

/// What the writer shares with the command thread.
#[derive(Default)]
struct Shared {
    /// `send` calls that wrote something.
    writes: AtomicU64,
    /// The world's commits: decided under this lock, so that `quiet` answers with the
    /// very last one.
    commits: Mutex<Commits>,
}

/// The state of the floor's world.
#[derive(Default)]
struct Commits {
    /// Stop committing (the world stops changing).
    quiet: bool,
    /// The newest commit's number and stamp (ns since the Unix epoch).
    last: (u64, u64),
}

impl Shared {
    fn commits(&self) -> std::sync::MutexGuard<'_, Commits> {
        self.commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `floor` worker: listens, prints `{"event":"listening",…}`, writes its observers
/// until stdin closes. Commands: `stats` (writes and newest stamp), `quiet` (stop
/// committing; answers with the final stamp).
pub(crate) fn floor_worker(world: String, rate: u64, payload_len: usize) -> Result<(), BenchError> {
    if rate == 0 {
        return Err(BenchError::InvalidConfig("--rate must be above 0".into()));
    }
    let world = WorldId::new(&world)
        .map_err(|e| BenchError::InvalidConfig(format!("world id {world:?}: {e}")))?;
    // A descriptor per observer: the same raise as a front-end's.
    flotilla_frontend::raise_descriptor_limit();
    let listener = listen()?;
    let addr = listener
        .local_addr()
        .map_err(BenchError::io("reading the floor's address"))?;
    let shared = Arc::new(Shared::default());
    let writer_shared = Arc::clone(&shared);
    let writer = std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || write_loop(&listener, &world, rate, payload_len, &writer_shared))
        .map_err(BenchError::io("spawning the floor writer"))?;
    print_line(
        &json!({"event": "listening", "addr": addr.to_string(), "pid": std::process::id()}),
    )?;
    let result = serve_commands(|command| {
        match command {
            "stats" => print_line(&json!({
                "event": "stats",
                "writes": shared.writes.load(Ordering::Relaxed),
                // The writer never returns: ended, it panicked.
                "failed": writer.is_finished(),
            }))?,
            "quiet" => {
                let final_ns = {
                    let mut commits = shared.commits();
                    commits.quiet = true;
                    commits.last.1
                };
                print_line(&json!({"event": "quiet", "final_ns": final_ns}))?;
            }
            other => eprintln!("floor worker: unknown command {other:?}"),
        }
        Ok(true)
    });
    // stdin closed: the process ends, and with it the writer thread.
    drop(writer);
    result
}

/// A non-blocking listener on loopback with a backlog for thousands of connects at once.
fn listen() -> Result<std::net::TcpListener, BenchError> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(BenchError::io("creating the floor's listener"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    socket
        .bind(&addr.into())
        .and_then(|()| socket.listen(4096))
        .and_then(|()| socket.set_nonblocking(true))
        .map_err(BenchError::io("binding the floor's listener"))?;
    Ok(socket.into())
}

/// The commit schedule: commit `n` is due `n / rate` after the start, stamped with that
/// instant's wall-clock time.
struct Schedule {
    started: Instant,
    started_ns: u64,
    rate: u64,
}

impl Schedule {
    /// The newest commit due at `now`.
    fn due(&self, now: Instant) -> u64 {
        let elapsed = now.duration_since(self.started).as_nanos();
        u64::try_from(elapsed * u128::from(self.rate) / 1_000_000_000).unwrap_or(u64::MAX)
    }

    /// The wall-clock stamp of commit `n`.
    fn stamp(&self, n: u64) -> u64 {
        self.started_ns + n.saturating_mul(1_000_000_000) / self.rate
    }

    /// When commit `n` is due.
    fn at(&self, n: u64) -> Instant {
        self.started + Duration::from_nanos(n.saturating_mul(1_000_000_000) / self.rate)
    }
}

/// The latest commit as the frames the writer sends.
struct Latest {
    /// Commit number (the batch's sequence number).
    seq: u64,
    /// Its `ChangeBatch` frame.
    batch: Bytes,
    /// `Welcome` and a `Snapshot` holding it: the answer to a new observer.
    welcome: Bytes,
}

impl Latest {
    fn new(world: &WorldId, seq: u64, stamp_ns: u64, payload_len: usize) -> Self {
        let value = Bytes::from(payload(stamp_ns, payload_len));
        let key = Bytes::from_static(KEY);
        let batch = FrontendToClient::ChangeBatch {
            world: world.clone(),
            batch: ChangeBatch {
                epoch: 1,
                seq,
                upserts: vec![(key.clone(), value.clone())],
                removes: Vec::new(),
            },
        }
        .encode_to_bytes();
        let mut welcome = bytes::BytesMut::new();
        FrontendToClient::Welcome {
            version: PROTOCOL_VERSION,
            session_token: Bytes::new(),
            resumed: false,
            server_id: "floor".into(),
        }
        .encode(&mut welcome);
        FrontendToClient::Snapshot {
            world: world.clone(),
            part: SnapshotPart::Whole,
            snapshot: Snapshot {
                epoch: 1,
                seq,
                entries: vec![(key, value)],
            },
        }
        .encode(&mut welcome);
        Self {
            seq,
            batch,
            welcome: welcome.freeze(),
        }
    }
}

/// The writer: accepts, answers handshakes, commits on schedule and writes every
/// connection behind the latest commit, round and round. When a pass finds every
/// connection holding the latest commit, it sleeps until the next commit is due (looking
/// at the listener every millisecond) instead of passing over them again.
fn write_loop(
    listener: &std::net::TcpListener,
    world: &WorldId,
    rate: u64,
    payload_len: usize,
    shared: &Shared,
) {
    const NAP: Duration = Duration::from_millis(1);
    let schedule = Schedule {
        started: Instant::now(),
        started_ns: unix_now_ns(),
        rate,
    };
    let mut latest = Latest::new(world, 0, schedule.stamp(0), payload_len);
    shared.commits().last = (0, schedule.stamp(0));
    let mut conns: Vec<Conn> = Vec::new();
    let mut scratch = vec![0u8; 64 * 1024];
    let mut at = 0;
    // What the pass so far came to: the most pressing of its connections' turns.
    let mut pass = Turn::Done;
    let mut now = Instant::now();
    loop {
        if at % STEP == 0 {
            now = Instant::now();
            if accept_all(listener, &mut conns) {
                pass = Turn::Waiting;
            }
            commit_due(&schedule, now, world, payload_len, shared, &mut latest);
        }
        if at >= conns.len() {
            at = 0;
            match pass {
                Turn::Wrote => {}
                Turn::Waiting => std::thread::sleep(NAP),
                Turn::Done => loop {
                    // Everyone holds the latest commit: wait for the next one, or for a
                    // new connection.
                    let next = schedule.at(latest.seq + 1);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()).min(NAP));
                    now = Instant::now();
                    if accept_all(listener, &mut conns)
                        || commit_due(&schedule, now, world, payload_len, shared, &mut latest)
                    {
                        break;
                    }
                },
            }
            pass = Turn::Done;
            continue;
        }
        let Some(conn) = conns.get_mut(at) else {
            continue;
        };
        match serve(conn, now, &latest, &mut scratch, shared) {
            Ok(turn) => {
                pass = match (pass, turn) {
                    (Turn::Wrote, _) | (_, Turn::Wrote) => Turn::Wrote,
                    (Turn::Waiting, _) | (_, Turn::Waiting) => Turn::Waiting,
                    _ => Turn::Done,
                };
                at += 1;
            }
            Err(()) => {
                // Closed or failed: the observer is gone (its worker counts it).
                conns.swap_remove(at);
            }
        }
    }
}

/// Makes the commit due at `now` the latest (unless the world went quiet); true if it did.
fn commit_due(
    schedule: &Schedule,
    now: Instant,
    world: &WorldId,
    payload_len: usize,
    shared: &Shared,
    latest: &mut Latest,
) -> bool {
    let due = schedule.due(now);
    if due <= latest.seq {
        return false;
    }
    let mut commits = shared.commits();
    if commits.quiet {
        return false;
    }
    commits.last = (due, schedule.stamp(due));
    drop(commits);
    *latest = Latest::new(world, due, schedule.stamp(due), payload_len);
    true
}

/// Takes every connection waiting on the listener; true if there was any. An error other
/// than "none waiting" (out of descriptors, say) is reported once.
fn accept_all(listener: &std::net::TcpListener, conns: &mut Vec<Conn>) -> bool {
    let mut any = false;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
                    continue;
                }
                any = true;
                conns.push(Conn {
                    stream,
                    welcomed: false,
                    sent: 0,
                    unsent: Bytes::new(),
                    read_at: Instant::now(),
                });
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) if error.kind() == ErrorKind::WouldBlock => return any,
            Err(error) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| eprintln!("floor writer: accept failed: {error}"));
                return any;
            }
        }
    }
}

/// One turn of one connection at `now`: the handshake answer once something arrived, then
/// the rest of a frame cut short, then the latest commit if it has not had it. `Err` when
/// the connection is closed or failed.
fn serve(
    conn: &mut Conn,
    now: Instant,
    latest: &Latest,
    scratch: &mut [u8],
    shared: &Shared,
) -> Result<Turn, ()> {
    if !conn.welcomed || now >= conn.read_at {
        // `Hello` and `Subscribe` before the answer; afterwards only pings, which the
        // floor does not answer (a front-end must: the floor is a lower bound). Read
        // what is there.
        let mut heard = false;
        loop {
            match conn.stream.read(scratch) {
                Ok(0) => return Err(()),
                Ok(_) => heard = true,
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
        conn.read_at = now + READ_EVERY;
        if !conn.welcomed {
            if !heard {
                return Ok(Turn::Waiting);
            }
            conn.welcomed = true;
            conn.sent = latest.seq;
            conn.unsent = latest.welcome.clone();
        }
    }
    if conn.unsent.is_empty() {
        if conn.sent >= latest.seq {
            return Ok(Turn::Done);
        }
        let written = send(conn, &latest.batch, shared)?;
        if written == 0 {
            // The socket is full: the commit after this one may be the one it gets.
            return Ok(Turn::Waiting);
        }
        conn.sent = latest.seq;
        conn.unsent = latest.batch.slice(written..);
    } else {
        let unsent = conn.unsent.clone();
        let written = send(conn, &unsent, shared)?;
        conn.unsent = unsent.slice(written..);
        if written == 0 {
            return Ok(Turn::Waiting);
        }
    }
    Ok(if conn.unsent.is_empty() {
        Turn::Wrote
    } else {
        Turn::Waiting
    })
}

/// One non-blocking `send`; a full socket writes nothing (`Ok(0)`).
fn send(conn: &mut Conn, bytes: &[u8], shared: &Shared) -> Result<usize, ()> {
    loop {
        match conn.stream.write(bytes) {
            Ok(written) => {
                if written > 0 {
                    shared.writes.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(written);
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(0),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
}

/// A floor writer process, seen from the harness.
struct FloorWorker {
    worker: Worker,
    addr: SocketAddr,
}

impl FloorWorker {
    fn start(launcher: &WorkerLauncher, config: &BigFinalConfig) -> Result<Self, BenchError> {
        let mut worker = launcher.spawn(
            "floor",
            &[
                "floor".into(),
                "--world".into(),
                crate::bigfinal::WORLD.into(),
                "--rate".into(),
                config.rate.to_string(),
                "--payload".into(),
                config.payload_len.to_string(),
            ],
        )?;
        let line = worker.expect("listening", Duration::from_secs(10))?;
        let addr = line
            .get("addr")
            .and_then(serde_json::Value::as_str)
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| BenchError::Worker(format!("floor: no address in {line}")))?;
        Ok(Self { worker, addr })
    }

    /// Writes so far; fails if the writer stopped on an error.
    fn writes(&mut self) -> Result<u64, BenchError> {
        self.worker.send("stats")?;
        let line = self.worker.expect("stats", Duration::from_secs(10))?;
        if line.get("failed").and_then(serde_json::Value::as_bool) == Some(true) {
            return Err(BenchError::Worker("a floor writer failed".into()));
        }
        line.get("writes")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| BenchError::Worker(format!("floor: no writes in {line}")))
    }

    /// Stops committing; returns the last commit's stamp.
    fn quiet(&mut self) -> Result<u64, BenchError> {
        self.worker.send("quiet")?;
        let line = self.worker.expect("quiet", Duration::from_secs(10))?;
        line.get("final_ns")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| BenchError::Worker(format!("floor: no final stamp in {line}")))
    }
}

/// Runs the floor with the big final's observers, spread and paced as there: `frontends`
/// writer processes, `observers` in all.
pub(crate) fn run_floor(
    config: &BigFinalConfig,
    launcher: &WorkerLauncher,
) -> Result<FloorFigures, BenchError> {
    let ticks = clock_ticks_per_second();
    let mut writers = (0..config.frontends)
        .map(|_| FloorWorker::start(launcher, config))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let mut groups = Vec::new();
    let mut subscribed = 0;
    for (index, writer) in writers.iter().enumerate() {
        let share = crate::bigfinal::observer_share(config, index);
        if share == 0 {
            continue;
        }
        let spec = crate::bigfinal::observer_spec(config, writer.addr, share);
        let (group, counts) = ObserverGroup::start(launcher, &spec)?;
        subscribed += counts.subscribed;
        groups.push((index, group));
    }
    let seconds_to_subscribe = started.elapsed().as_secs_f64();

    std::thread::sleep(Duration::from_secs(1));
    for (_, group) in &mut groups {
        group.start_measuring()?;
    }
    let writes_before = writers
        .iter_mut()
        .map(FloorWorker::writes)
        .collect::<Result<Vec<_>, _>>()?;
    let meters = writers
        .iter()
        .map(|writer| CpuMeter::start(writer.worker.pid(), ticks))
        .collect::<Result<Vec<_>, _>>()?;
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(config.seconds));
    let cpu_percent = meters
        .iter()
        .map(CpuMeter::percent)
        .collect::<Result<Vec<_>, _>>()?;
    let elapsed = window.elapsed().as_secs_f64();
    let writes_after = writers
        .iter_mut()
        .map(FloorWorker::writes)
        .collect::<Result<Vec<_>, _>>()?;
    let finals = writers
        .iter_mut()
        .map(FloorWorker::quiet)
        .collect::<Result<Vec<_>, _>>()?;
    for (_, group) in &mut groups {
        group.stop_sampling()?;
    }
    std::thread::sleep(crate::bigfinal::SETTLE);
    let mut reports = Vec::new();
    for (_, group) in &mut groups {
        reports.extend(group.stop_measuring()?);
    }
    // Each group's observers converged once they hold their own writer's last commit; a
    // census every 250 ms until all do, or CONVERGE_WITHIN passed (as for the front-ends).
    let stopped = Instant::now();
    let converged = loop {
        let mut converged = 0;
        for (index, group) in &mut groups {
            let last = finals.get(*index).copied();
            converged += group
                .census()?
                .into_iter()
                .filter(|(stamp, _)| Some(*stamp) == last)
                .map(|(_, observers)| observers)
                .sum::<u64>();
        }
        if converged >= subscribed as u64 || stopped.elapsed() >= crate::bigfinal::CONVERGE_WITHIN {
            break converged;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let totals = ReportTotals::of(&reports);
    let writes_per_second: Vec<f64> = writes_before
        .iter()
        .zip(&writes_after)
        .map(|(before, after)| after.saturating_sub(*before) as f64 / elapsed)
        .collect();
    let cpu_us_per_write = cpu_percent
        .iter()
        .zip(&writes_per_second)
        .map(|(cpu, writes)| crate::bigfinal::cpu_us_per(*cpu, *writes))
        .collect();
    let figures = FloorFigures {
        subscribed,
        seconds_to_subscribe,
        lag: totals.histogram.percentiles(),
        state_age: totals.state_age.percentiles(),
        converged,
        cpu_percent,
        writes_per_second,
        cpu_us_per_write,
    };
    eprintln!(
        "bigfinal floor: {subscribed} subscribed in {seconds_to_subscribe:.1} s; lag p50 {:.0} ms, \
         p99 {:.0} ms; state age p50 {:.0} ms, p99 {:.0} ms; {converged} converged",
        figures.lag.p50_us / 1000.0,
        figures.lag.p99_us / 1000.0,
        figures.state_age.p50_us / 1000.0,
        figures.state_age.p99_us / 1000.0,
    );
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lean::Protocol;

    #[test]
    fn commits_are_due_and_stamped_on_the_schedule() {
        let schedule = Schedule {
            started: Instant::now(),
            started_ns: 1_000_000_000,
            rate: 20,
        };
        assert_eq!(schedule.due(schedule.started), 0);
        assert_eq!(
            schedule.due(schedule.started + Duration::from_millis(49)),
            0
        );
        assert_eq!(
            schedule.due(schedule.started + Duration::from_millis(50)),
            1
        );
        assert_eq!(
            schedule.due(schedule.started + Duration::from_millis(1_020)),
            20
        );
        assert_eq!(schedule.stamp(3), 1_150_000_000);
        assert_eq!(
            schedule.at(2),
            schedule.started + Duration::from_millis(100)
        );
    }

    #[test]
    fn the_latest_frames_carry_the_commit_stamp_where_the_observers_read_it() {
        let world = WorldId::new("bigfinal").expect("a valid world id");
        let latest = Latest::new(&world, 7, 123_456_789, 300);
        let mut events = Vec::new();
        let consumed = Protocol::Flotilla
            .decode(&latest.welcome, &mut |event| events.push(event))
            .expect("the welcome decodes");
        assert_eq!(consumed, latest.welcome.len());
        assert_eq!(
            events,
            vec![crate::lean::LeanEvent::Subscribed {
                published_ns: Some(123_456_789)
            }]
        );
        events.clear();
        Protocol::Flotilla
            .decode(&latest.batch, &mut |event| events.push(event))
            .expect("the batch decodes");
        assert_eq!(
            events,
            vec![crate::lean::LeanEvent::Delivered {
                published_ns: 123_456_789
            }]
        );
    }
}
