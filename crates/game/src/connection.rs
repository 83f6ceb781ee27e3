//! One front-end link: handshake, keep-alive, and the frames a front-end sends.
//!
//! Per link, two tasks: this reader (decodes frames, answers pings, enforces the idle
//! timeout, applies subscribes and routes inputs) and the writer from
//! [`outbox`](crate::outbox), which batches queued frames into few syscalls.

use std::net::SocketAddr;
use std::sync::Arc;

use flotilla_wire::{Decoder, ErrorCode, FrontendToGame, GameToFrontend, Message, RawFrame};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::sleep_until;

use crate::events::{FrontendId, GameEvent};
use crate::machine::{FrontendLink, Held, LinkEvent};
use crate::server::{Link, Shared, error_frame, lock, stopped};
use crate::world::{subscribe, unsubscribe};
use flotilla_conn::{Clock, KeepAliveConfig};
use flotilla_link::outbox::{FrameKind, Outbox, run_writer};
use flotilla_link::stream::LinkStream;

/// Bytes reserved in the receive buffer before each read.
const READ_RESERVE: usize = 16 * 1024;

/// Why a link ends: an error frame to send first, or none.
struct Close {
    error: Option<(ErrorCode, String)>,
    reason: String,
}

impl Close {
    fn with_error(code: ErrorCode, text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            reason: format!("{code:?}: {text}"),
            error: Some((code, text)),
        }
    }

    fn quietly(reason: impl Into<String>) -> Self {
        Self {
            error: None,
            reason: reason.into(),
        }
    }
}

/// The reader side of one front-end link.
struct Connection {
    shared: Arc<Shared>,
    id: FrontendId,
    peer: SocketAddr,
    outbox: Arc<Outbox>,
    /// The link's rules (handshake, pings).
    machine: FrontendLink,
    /// The keep-alive intervals once the front-end said hello.
    keep_alive: KeepAliveConfig,
    /// Set once the handshake is done.
    link: Option<Arc<Link>>,
}

/// Serves one accepted front-end connection until it closes.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    id: FrontendId,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Err(error) = stream.set_nodelay(true) {
        log::debug!("front-end {peer}: set_nodelay failed: {error}");
    }
    let stream = match &shared.config.tls {
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(tls));
            match tokio::time::timeout(shared.config.idle_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => LinkStream::ServerTls(Box::new(stream)),
                Ok(Err(error)) => {
                    log::warn!("front-end {peer}: TLS handshake failed: {error}");
                    return;
                }
                Err(_) => {
                    log::warn!("front-end {peer}: TLS handshake timed out");
                    return;
                }
            }
        }
        None => LinkStream::Plain(stream),
    };
    let (mut reader, writer) = stream.split();
    // Silence counts from the start; pings start once the front-end's hello is accepted.
    let machine = FrontendLink::new();
    let keep_alive = KeepAliveConfig::new(shared.config.ping_interval, shared.config.idle_timeout);
    let outbox = Arc::new(Outbox::new(
        shared.config.max_queued_bytes,
        error_frame(ErrorCode::Overloaded, "send queue over budget"),
        Arc::clone(&shared.totals),
        Clock::process(),
        machine.keep_alive(keep_alive),
    ));
    let mut writer_task = tokio::spawn(run_writer(writer, Arc::clone(&outbox)));
    let mut connection = Connection {
        shared: Arc::clone(&shared),
        id,
        peer,
        outbox: Arc::clone(&outbox),
        machine,
        keep_alive,
        link: None,
    };
    let mut decoder = Decoder::new(shared.config.max_frame_len);
    let mut writer_done = false;
    let close = loop {
        // The peer is alive when it sends whole frames (PROTOCOL.md section 7): only
        // decoded frames count as heard, so a peer trickling bytes without ever finishing
        // a frame is still closed.
        match connection.drain(&mut decoder) {
            Ok(0) => {}
            Ok(_) => outbox.on_received(),
            Err(close) => break close,
        }
        if shared.inputs.len() >= shared.config.event_queue.max(1) {
            // The game is behind on inputs: stop reading this link until it catches up
            // (TCP pushes back on the front-end). Not reading is not the peer's silence.
            tokio::select! {
                () = shared.inputs.wait_for_room() => {}
                () = stopped(&mut shutdown) => {
                    break Close::with_error(ErrorCode::ShuttingDown, "game server shutting down");
                }
            }
            outbox.on_received();
        }
        let keep_alive_at = outbox.keep_alive_deadline();
        decoder.buffer_mut().reserve(READ_RESERVE);
        tokio::select! {
            read = reader.read_buf(decoder.buffer_mut()) => match read {
                Ok(0) => break Close::quietly("peer closed the connection"),
                Ok(_) => {}
                Err(error) => break Close::quietly(format!("read failed: {error}")),
            },
            () = sleep_until(keep_alive_at.unwrap_or_else(far_future).into()), if keep_alive_at.is_some() => {
                // Bytes already waiting in the socket are not silence: a starved process
                // wakes with its timer and its socket ready at once, and the frames come
                // first (the loop decodes them and counts the peer heard).
                match reader.try_read_buf(decoder.buffer_mut()) {
                    Ok(0) => break Close::quietly("peer closed the connection"),
                    Ok(_) => continue,
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(error) => break Close::quietly(format!("read failed: {error}")),
                }
                if let Some(action) = outbox.poll_keep_alive() {
                    match connection.machine.on_keep_alive(action) {
                        LinkEvent::Reply(ping) => {
                            // A refused push closes the outbox; the writer's end ends the loop.
                            let _ = outbox.push(ping, FrameKind::Other);
                        }
                        LinkEvent::Close { error, reason } => break Close { error, reason },
                        _ => {}
                    }
                }
            }
            written = &mut writer_task => {
                writer_done = true;
                break Close::quietly(match written {
                    Ok(Ok(())) => "link closed".to_owned(),
                    Ok(Err(error)) => format!("write failed: {error}"),
                    Err(error) => format!("writer task failed: {error}"),
                });
            }
            () = stopped(&mut shutdown) => {
                break Close::with_error(ErrorCode::ShuttingDown, "game server shutting down");
            }
        }
    };
    log::info!("front-end {peer} ({id:?}) link closing: {}", close.reason);
    outbox.close(close.error.map(|(code, text)| error_frame(code, text)));
    if !writer_done {
        // Give the writer a moment to flush the final error frame.
        let flush = tokio::time::timeout(std::time::Duration::from_secs(1), &mut writer_task);
        if flush.await.is_err() {
            writer_task.abort();
        }
    }
    if connection.link.is_some() {
        shared.unregister(id);
    }
}

/// An instant the select arm never reaches (the arm is disabled when there is no deadline).
fn far_future() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(86_400)
}

impl Connection {
    /// Handles every complete frame in the decoder; returns how many there were.
    fn drain(&mut self, decoder: &mut Decoder) -> Result<usize, Close> {
        let mut frames = 0;
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    frames += 1;
                    self.handle(&frame)?;
                }
                Ok(None) => return Ok(frames),
                Err(error) => match self.machine.handle_malformed(&error) {
                    LinkEvent::Close { error, reason } => return Err(Close { error, reason }),
                    _ => return Err(Close::with_error(error.code(), error.to_string())),
                },
            }
        }
    }

    fn handle(&mut self, frame: &RawFrame) -> Result<(), Close> {
        match self.machine.handle_frame(frame) {
            LinkEvent::Nothing => {}
            LinkEvent::Reply(bytes) => {
                // A refused push closes the outbox; the writer's end ends the loop.
                let _ = self.outbox.push(bytes, FrameKind::Other);
            }
            LinkEvent::Hello { name } => self.ready(name),
            LinkEvent::Close { error, reason } => return Err(Close { error, reason }),
            LinkEvent::Message(message) => {
                if let Some(link) = self.link.clone() {
                    self.dispatch(&link, message);
                }
            }
        }
        Ok(())
    }

    /// Acts on a message of a ready link.
    fn dispatch(&mut self, link: &Arc<Link>, message: FrontendToGame) {
        match message {
            FrontendToGame::Subscribe { world, since } => {
                subscribe(&self.shared, link, world, since);
            }
            FrontendToGame::Unsubscribe { world } => unsubscribe(&self.shared, self.id, &world),
            FrontendToGame::Input {
                world,
                session,
                payload,
            } => {
                lock(&self.shared.registry).sessions.input(session, self.id);
                self.shared.emit(GameEvent::Input {
                    world,
                    session,
                    payload,
                });
            }
            FrontendToGame::SessionOpened {
                session,
                client_name,
            } => {
                let moved_from = {
                    let mut registry = lock(&self.shared.registry);
                    let before = registry.sessions.opened(session, self.id);
                    before.and_then(|before| registry.frontends.get(&before).cloned())
                };
                if let Some(link) = moved_from {
                    // The front-end it left closes the connection still carrying it there,
                    // telling that client why (PROTOCOL.md section 2).
                    let moved = GameToFrontend::SessionMoved { session }.encode_to_bytes();
                    let _ = link.outbox.push(moved, FrameKind::Other);
                }
                self.shared.emit(GameEvent::SessionOpened {
                    session,
                    client_name,
                    frontend: self.id,
                });
            }
            FrontendToGame::SessionHeld {
                session,
                client_name,
            } => {
                let held = lock(&self.shared.registry).sessions.held(session, self.id);
                match held {
                    Held::Registered => self.shared.emit(GameEvent::SessionOpened {
                        session,
                        client_name,
                        frontend: self.id,
                    }),
                    Held::Known => {}
                    Held::Elsewhere(_) => {
                        // Its client resumed on another front-end meanwhile: the
                        // connection this one still holds is stale.
                        let moved = GameToFrontend::SessionMoved { session }.encode_to_bytes();
                        let _ = self.outbox.push(moved, FrameKind::Other);
                    }
                }
            }
            FrontendToGame::SessionClosed { session } => {
                let closed = lock(&self.shared.registry)
                    .sessions
                    .closed(session, self.id);
                if closed {
                    self.shared.emit(GameEvent::SessionClosed { session });
                }
            }
            // Handshake, keep-alive and errors are the machine's.
            FrontendToGame::Hello { .. }
            | FrontendToGame::Ping { .. }
            | FrontendToGame::Pong { .. }
            | FrontendToGame::Error { .. } => {}
        }
    }

    /// The front-end's hello was accepted: welcome it, announce the worlds, start pinging.
    fn ready(&mut self, frontend_id: String) {
        let link = Arc::new(Link {
            id: self.id,
            name: frontend_id.clone(),
            peer: self.peer,
            outbox: Arc::clone(&self.outbox),
        });
        self.shared.register(Arc::clone(&link), &self.machine);
        self.outbox
            .set_keep_alive(self.machine.keep_alive(self.keep_alive));
        self.link = Some(link);
        log::info!(
            "front-end {frontend_id} ({:?}) connected from {}",
            self.id,
            self.peer
        );
        self.shared.emit(GameEvent::FrontendConnected {
            frontend: self.id,
            name: frontend_id,
        });
    }
}
