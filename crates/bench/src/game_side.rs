//! The game server of the benchmarks, in the harness's own process: a flotilla-game
//! server on its own tokio runtime hosting one world, optionally echoing every input
//! back to its session as an output.

use std::net::SocketAddr;

use bytes::Bytes;
use flotilla_game::{GameConfig, GameEvent, GameServer, WorldHandle, WorldId};

use crate::BenchError;

/// A running game server with one world.
#[derive(Debug)]
pub(crate) struct BenchGame {
    pub server: std::sync::Arc<GameServer>,
    pub world: WorldHandle,
    pub world_id: WorldId,
    /// Front-end links that ended (a front-end disconnected), since the start.
    pub frontends_lost: std::sync::Arc<std::sync::atomic::AtomicU64>,
    // Dropped last: the runtime runs the server's tasks.
    runtime: Option<tokio::runtime::Runtime>,
}

impl BenchGame {
    /// Starts a game server on 127.0.0.1 (free port) hosting `world` with one first
    /// batch committed; with `echo`, every input is sent back to its session.
    pub fn start(world: &str, echo: bool, worker_threads: usize) -> Result<Self, BenchError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name("bench-game")
            .enable_all()
            .build()
            .map_err(BenchError::io("starting the game runtime"))?;
        let server = runtime
            .block_on(GameServer::bind("127.0.0.1:0", GameConfig::default()))
            .map_err(|e| BenchError::Server(format!("game server: {e}")))?;
        let server = std::sync::Arc::new(server);
        let world_id = WorldId::new(world)
            .map_err(|e| BenchError::InvalidConfig(format!("world id {world:?}: {e}")))?;
        let handle = server
            .add_world(
                world_id.clone(),
                Bytes::from_static(b"{\"kind\":\"bench\"}"),
            )
            .map_err(|e| BenchError::Server(format!("adding world: {e}")))?;
        let mut tx = handle.begin();
        tx.set("k", crate::lean::payload(0, 100));
        tx.commit()
            .map_err(|e| BenchError::Server(format!("first commit: {e}")))?;
        let mut events = server
            .take_events()
            .ok_or_else(|| BenchError::Server("game events already taken".into()))?;
        let echo_server = std::sync::Arc::clone(&server);
        let frontends_lost = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let lost = std::sync::Arc::clone(&frontends_lost);
        runtime.spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    GameEvent::Input {
                        world,
                        session,
                        payload,
                    } if echo => {
                        let _ = echo_server.send_output(&world, session, payload);
                    }
                    GameEvent::FrontendDisconnected { .. } => {
                        lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        });
        Ok(Self {
            server,
            world: handle,
            world_id,
            frontends_lost,
            runtime: Some(runtime),
        })
    }

    /// The address front-ends (and direct clients) connect to.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

impl Drop for BenchGame {
    fn drop(&mut self) {
        self.server.shutdown();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}
