//! The game links' keep-alive, on a thread of its own.
//!
//! A front-end fanning out to tens of thousands of observers on a starved core can hold
//! its event loop for seconds, and a game server closes a link it has not heard from for
//! 3 s; losing the link is the one thing a front-end must not do under client load. So
//! each game link's liveness ([`GameLinkKeeper`]) sits beside its outbound queue in a
//! [`GameLinkShared`], and a small thread ([`KeepAliveThread`]) that does nothing else
//! sleeps until the next keeper deadline and then acts for the event loop:
//!
//! - a link quiet for the ping interval gets its `Ping`, written at once (behind whatever
//!   the event loop had queued for it, in order: everything is written under the lock);
//! - a game server silent for the timeout is closed with `Error{Timeout}`, unless its
//!   bytes wait unread in the socket (the front-end is behind, the game server is not
//!   silent).
//!
//! The fast paths stay on the event loop's thread: it writes the machine's frames to the
//! game server itself, and the link's reader reports what it heard and answers pings as
//! it decodes frames. The lock is uncontended but for the keep-alive thread's rare turns.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use flotilla_conn::{Clock, Instant};
use tokio::sync::mpsc;

use super::{Event, OutQueue, Peer, ServerStats};
use crate::game_link::{GameLinkKeeper, KeeperAction};
use crate::ids::GameId;

/// The longest the keep-alive thread sleeps without looking (it is also woken whenever a
/// deadline may have moved earlier).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// One game link's outbound queue and keeper, shared by the event loop (the machine's
/// frames), the link's reader (what was heard; pongs) and the keep-alive thread (pings,
/// closing a silent link).
#[derive(Debug)]
pub(super) struct GameLinkShared {
    game: GameId,
    state: Mutex<GameOut>,
}

/// The state behind a [`GameLinkShared`]'s lock.
#[derive(Debug)]
pub(super) struct GameOut {
    /// What waits to be written to the game server.
    pub(super) queue: OutQueue,
    /// The link's liveness.
    pub(super) keeper: GameLinkKeeper,
    /// Bytes the keep-alive thread wrote from the queue, not yet reported to the machine
    /// (`Input::GameDrained`) by the event loop. Its own pings count too: a few bytes,
    /// against a stall rule about megabytes.
    pub(super) drained_unreported: usize,
    /// The link is closed (by the machine or the keeper): nothing more is written.
    pub(super) closed: bool,
}

impl GameLinkShared {
    /// A link of `game` whose outbound queue is `queue`, kept alive by `keeper`.
    pub(super) fn new(game: GameId, queue: OutQueue, keeper: GameLinkKeeper) -> Arc<Self> {
        Arc::new(Self {
            game,
            state: Mutex::new(GameOut {
                queue,
                keeper,
                drained_unreported: 0,
                closed: false,
            }),
        })
    }

    /// The game link this is.
    pub(super) fn game(&self) -> GameId {
        self.game
    }

    /// The link's state. A panic while it was held leaves a usable queue: keep going.
    pub(super) fn lock(&self) -> MutexGuard<'_, GameOut> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Does the keeper's due work at `now`; returns its next deadline.
    fn keep(&self, now: Instant, stats: &ServerStats, tx: &mpsc::Sender<Event>) -> Option<Instant> {
        let mut out = self.lock();
        if out.closed {
            return None;
        }
        while let Some(action) = out.keeper.poll(now) {
            match action {
                KeeperAction::Ping(ping) => {
                    out.queue.push(ping, false);
                    self.write(&mut out, stats, tx);
                }
                KeeperAction::Close { error_frame, text } => {
                    if bytes_waiting(&out.queue) {
                        out.keeper.on_bytes_waiting(now);
                        continue;
                    }
                    log::warn!("game link {:?}: closing: {text}", self.game);
                    out.queue.push(error_frame, false);
                    out.queue.close_layers();
                    self.write(&mut out, stats, tx);
                    out.queue.shutdown_socket();
                    out.closed = true;
                    stats
                        .game_links_silent
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return None;
                }
            }
        }
        out.keeper.deadline()
    }

    /// Writes what the queue holds, unless the event loop waits for the socket to take
    /// more (it writes then). A socket that would block is handed to the event loop,
    /// which waits for it.
    fn write(&self, out: &mut GameOut, stats: &ServerStats, tx: &mpsc::Sender<Event>) {
        if out.queue.waiting_writable {
            return;
        }
        let (drained, would_block) = out.queue.flush(stats);
        out.drained_unreported += drained;
        if would_block {
            let _ = tx.try_send(Event::Writable(Peer::Game(self.game)));
        }
    }
}

/// True when bytes from the peer wait unread in the socket.
fn bytes_waiting(queue: &OutQueue) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(
        socket2::SockRef::from(&*queue.stream).peek(&mut byte),
        Ok(read) if read > 0
    )
}

/// The links the keep-alive thread watches.
#[derive(Debug, Default)]
struct Registry {
    links: Vec<Weak<GameLinkShared>>,
    /// A deadline may have moved earlier since the thread last looked.
    poked: bool,
    stop: bool,
}

#[derive(Debug, Default)]
struct Shared {
    registry: Mutex<Registry>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The thread that keeps every game link of a front-end alive (see the module comment).
#[derive(Debug)]
pub(super) struct KeepAliveThread {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KeepAliveThread {
    /// Starts the thread. It reads time from `clock` (the event loop's), counts writes in
    /// `stats` and hands sockets that would block to the event loop through `tx`.
    pub(super) fn start(
        name: &str,
        clock: Clock,
        stats: Arc<ServerStats>,
        tx: mpsc::Sender<Event>,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("links-{name}"))
            .spawn(move || run(&thread_shared, clock, &stats, &tx))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Watches `link` from now on (until it is dropped everywhere else).
    pub(super) fn add(&self, link: &Arc<GameLinkShared>) {
        let mut registry = self.shared.lock();
        registry.links.push(Arc::downgrade(link));
        registry.poked = true;
        self.shared.changed.notify_one();
    }

    /// A keeper's deadline may have moved earlier (pings start after the welcome).
    pub(super) fn poke(&self) {
        self.shared.lock().poked = true;
        self.shared.changed.notify_one();
    }
}

impl Drop for KeepAliveThread {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, clock: Clock, stats: &ServerStats, tx: &mpsc::Sender<Event>) {
    let mut registry = shared.lock();
    loop {
        if registry.stop {
            return;
        }
        registry.poked = false;
        registry.links.retain(|link| link.strong_count() > 0);
        let links: Vec<Arc<GameLinkShared>> =
            registry.links.iter().filter_map(Weak::upgrade).collect();
        drop(registry);
        let now = clock.now();
        let next = links
            .iter()
            .filter_map(|link| link.keep(now, stats, tx))
            .min();
        drop(links);
        let sleep = next.map_or(MAX_SLEEP, |at| {
            clock
                .to_std(at)
                .saturating_duration_since(std::time::Instant::now())
                .min(MAX_SLEEP)
        });
        registry = shared.lock();
        if registry.poked || registry.stop {
            continue;
        }
        registry = shared
            .changed
            .wait_timeout(registry, sleep)
            .map(|(guard, _)| guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner().0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_conn::KeepAliveConfig;
    use flotilla_wire::{
        Decoder, FrontendToGame, GameToFrontend, Message, PROTOCOL_VERSION, RawFrame,
    };
    use std::io::{Read, Write};

    const MS: Duration = Duration::from_millis(1);

    /// A game link whose event loop never runs: the test's thread blocks (a front-end
    /// held by fan-out), only the keep-alive thread acts. Returns the link, the game
    /// server's end of the socket, and the thread.
    async fn stalled_link(
        clock: Clock,
    ) -> (
        Arc<GameLinkShared>,
        std::net::TcpStream,
        KeepAliveThread,
        mpsc::Receiver<Event>,
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let frontend_side = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (game_side, _) = listener.accept().unwrap();
        game_side
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let keep_alive = KeepAliveConfig::new(200 * MS, 600 * MS);
        let link = GameLinkShared::new(
            GameId(1),
            OutQueue::new(Arc::new(frontend_side), None, None),
            GameLinkKeeper::new(clock.now(), keep_alive),
        );
        let (tx, rx) = mpsc::channel(16);
        let keepers = KeepAliveThread::start("test", clock, Arc::default(), tx).unwrap();
        keepers.add(&link);
        // The reader saw the game server's welcome before the loop stalled.
        let welcome = GameToFrontend::Welcome {
            version: PROTOCOL_VERSION,
            server_id: "game".into(),
        }
        .encode_to_bytes();
        let welcome = RawFrame::parse(welcome, 1 << 20).unwrap();
        link.lock().keeper.on_frame(clock.now(), &welcome);
        keepers.poke();
        (link, game_side, keepers, rx)
    }

    /// Reads frames from the game server's end until `until` has been seen or it ends.
    fn read_until(
        game_side: &mut std::net::TcpStream,
        mut until: impl FnMut(&FrontendToGame) -> bool,
    ) -> Vec<FrontendToGame> {
        let mut decoder = Decoder::default();
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            while let Some(message) = decoder.next_message::<FrontendToGame>().unwrap() {
                let done = until(&message);
                seen.push(message);
                if done {
                    return seen;
                }
            }
            match game_side.read(&mut buffer) {
                Ok(0) | Err(_) => return seen,
                Ok(read) => decoder.feed(&buffer[..read]),
            }
        }
    }

    #[tokio::test]
    async fn a_held_event_loop_keeps_its_game_link_alive_while_the_game_server_talks() {
        let clock = Clock::start();
        let (link, mut game_side, keepers, _rx) = stalled_link(clock).await;
        // The game server keeps talking; nobody on the front-end reads it (its bytes wait
        // in the socket). The loop is held 1.5 s, past the 0.6 s silence timeout.
        let ping = GameToFrontend::Ping { nonce: 1 }.encode_to_bytes();
        let mut pings = 0;
        let started = std::time::Instant::now();
        while started.elapsed() < 1500 * MS {
            game_side.write_all(&ping).unwrap();
            let seen = read_until(&mut game_side, |m| matches!(m, FrontendToGame::Ping { .. }));
            assert!(
                matches!(seen.last(), Some(FrontendToGame::Ping { .. })),
                "the keep-alive thread pings for the held loop: {seen:?}"
            );
            pings += 1;
        }
        assert!(pings >= 5, "{pings} pings in 1.5 s at a 0.2 s interval");
        assert!(!link.lock().closed, "bytes waiting unread are not silence");
        drop(keepers);
    }

    #[tokio::test]
    async fn a_silent_game_server_is_closed_with_a_timeout_error_even_while_the_loop_is_held() {
        let clock = Clock::start();
        let (link, mut game_side, keepers, _rx) = stalled_link(clock).await;
        let seen = read_until(&mut game_side, |m| {
            matches!(m, FrontendToGame::Error { .. })
        });
        assert!(
            matches!(
                seen.last(),
                Some(FrontendToGame::Error {
                    code: flotilla_wire::ErrorCode::Timeout,
                    ..
                })
            ),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .any(|m| matches!(m, FrontendToGame::Ping { .. }))
        );
        // Then the socket ends.
        let mut rest = Vec::new();
        assert_eq!(game_side.read_to_end(&mut rest).unwrap(), 0);
        assert!(link.lock().closed);
        drop(keepers);
    }
}
