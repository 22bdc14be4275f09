//! The server's shared state, handed to every session and API handler.

use crate::bus::LocalBus;
use crate::config::Config;
use crate::history::{Append, Committed, SqliteHistory, StoreError};
use crate::hub::Hub;
use crate::metrics::METRICS;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tandem_protocol::{publication_frame, IceServer};

/// Produces the `ice_servers` handed to a client in the connect reply (for example
/// STUN/TURN URLs with fresh credentials for `identity`).
pub type IceServerProvider = Arc<dyn Fn(&str) -> Vec<IceServer> + Send + Sync>;

pub struct ServerState {
    pub config: Config,
    pub hub: Hub,
    pub bus: Arc<LocalBus>,
    pub history: SqliteHistory,
    pub ice_servers: Option<IceServerProvider>,
    /// The SFU, when started (`[sfu] enabled`); set once at start.
    pub sfu: OnceLock<tandem_sfu::Sfu>,
    shutting_down: AtomicBool,
    next_session: AtomicU64,
}

impl ServerState {
    pub fn new(
        config: Config,
        ice_servers: Option<IceServerProvider>,
    ) -> Result<Arc<Self>, StoreError> {
        let bus = Arc::new(LocalBus::default());
        let fanout = bus.clone();
        let on_commit = Arc::new(move |committed: &[Committed]| {
            METRICS
                .publications
                .fetch_add(committed.len() as u64, Ordering::Relaxed);
            // One delivery per channel with all of its publications of the
            // transaction (see `LocalBus::deliver`).
            let mut rest = committed;
            while let Some(first) = rest.first() {
                let run = rest
                    .iter()
                    .take_while(|c| c.channel == first.channel)
                    .count();
                let (same, next) = rest.split_at(run);
                let frames: Vec<(u64, Bytes)> = same
                    .iter()
                    .map(|c| {
                        let frame = publication_frame(&c.channel, &c.publication);
                        (c.publication.offset, Bytes::from(frame))
                    })
                    .collect();
                fanout.deliver(&first.channel, &frames);
                rest = next;
            }
        });
        let history =
            SqliteHistory::open(&config.server.data_dir, config.history.clone(), on_commit)?;
        let l = &config.limits;
        let hub = Hub::new(
            l.max_participants_per_room,
            l.max_connections_per_identity,
            l.max_connections,
        );
        Ok(Arc::new(ServerState {
            hub,
            bus,
            history,
            ice_servers,
            sfu: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            next_session: AtomicU64::new(1),
            config,
        }))
    }

    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Appends a publication; `append.ack` runs after the commit.
    pub async fn publish(&self, append: Append) -> Result<(), StoreError> {
        self.history.append(append).await
    }
}
