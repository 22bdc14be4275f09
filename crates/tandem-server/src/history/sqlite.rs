//! SQLite history: WAL mode, one writer thread with group commit, a small pool of
//! reader connections for history pages and recovery.

use super::{Append, ChannelState, CommitHook, Committed, Page, Range, StoreError};
use crate::auth::now_millis;
use crate::config::{HistoryConfig, SyncMode};
use crate::metrics::METRICS;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tandem_protocol::{Publication, RawValue};
use tokio::sync::{mpsc, oneshot};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS channels (
    name  TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    top   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS publications (
    channel TEXT NOT NULL,
    offset  INTEGER NOT NULL,
    ts      INTEGER NOT NULL,
    sender  TEXT,
    data    TEXT NOT NULL,
    PRIMARY KEY (channel, offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS publications_by_ts ON publications (ts);
";

const MAX_READERS: usize = 4;

enum Job {
    Append(Append),
    Ensure(Arc<str>, oneshot::Sender<Result<ChannelState, StoreError>>),
    TrimByAge(u64),
}

pub struct SqliteHistory {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    config: HistoryConfig,
}

fn open(path: &Path, sync: SyncMode) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        },
    )?;
    Ok(conn)
}

fn new_epoch() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(8)
        .collect()
}

impl SqliteHistory {
    /// Opens (creating if needed) `dir/history.sqlite3` and starts the writer thread.
    /// `on_commit` receives each transaction's committed publications in offset order.
    pub fn open(
        dir: &Path,
        config: HistoryConfig,
        on_commit: CommitHook,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join("history.sqlite3");
        let conn = open(&path, config.sync)?;
        conn.execute_batch(SCHEMA)?;
        let (tx, rx) = mpsc::channel(config.writer_queue);
        let writer_config = config.clone();
        let writer = std::thread::Builder::new()
            .name("tandem-history".into())
            .spawn(move || {
                Writer {
                    conn,
                    config: writer_config,
                    on_commit,
                }
                .run(rx)
            })
            .map_err(|e| StoreError(format!("cannot start history writer: {e}")))?;
        Ok(SqliteHistory {
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: Mutex::new(Vec::new()),
            path,
            config,
        })
    }

    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, StoreError> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .clone()
            .ok_or_else(|| StoreError("history store is shut down".into()))
    }

    /// Queues an append; waits only while the writer queue is full (backpressure).
    /// The append's `ack` runs after the commit.
    pub async fn append(&self, append: Append) -> Result<(), StoreError> {
        let sender = self.sender()?;
        sender.send(Job::Append(append)).await.map_err(|e| {
            if let Job::Append(a) = e.0 {
                let err = StoreError("history store is shut down".into());
                (a.ack)(Err(&err));
            }
            StoreError("history store is shut down".into())
        })
    }

    /// The channel's position, creating the channel (and its epoch) if it is new, so a
    /// subscriber's epoch stays valid once publications start.
    pub async fn ensure(&self, channel: Arc<str>) -> Result<ChannelState, StoreError> {
        if let Some(state) = self
            .read(channel.clone(), Range::Latest { limit: 0 })
            .await?
        {
            return Ok(state.state);
        }
        let (tx, rx) = oneshot::channel();
        self.sender()?
            .send(Job::Ensure(channel, tx))
            .await
            .map_err(|_| StoreError("history store is shut down".into()))?;
        rx.await
            .map_err(|_| StoreError("history writer stopped".into()))?
    }

    /// Reads a page of the log; `None` when the channel has never been used.
    pub async fn read(&self, channel: Arc<str>, range: Range) -> Result<Option<Page>, StoreError> {
        let conn = self.take_reader()?;
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = read_page(&conn, &channel, range);
            (conn, result)
        })
        .await
        .map_err(|e| StoreError(format!("reader task failed: {e}")))?;
        let mut readers = self.readers.lock().expect("readers lock");
        if readers.len() < MAX_READERS {
            readers.push(conn);
        }
        result
    }

    fn take_reader(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.readers.lock().expect("readers lock").pop() {
            return Ok(conn);
        }
        open(&self.path, self.config.sync)
    }

    /// Asks the writer to drop publications older than the configured age.
    pub async fn trim_by_age(&self) -> Result<(), StoreError> {
        let cutoff = now_millis().saturating_sub(self.config.max_age_secs * 1000);
        self.sender()?
            .send(Job::TrimByAge(cutoff))
            .await
            .map_err(|_| StoreError("history store is shut down".into()))
    }

    /// Stops taking appends, commits what is queued, and waits for the writer.
    pub fn shutdown(&self) {
        self.jobs.lock().expect("jobs lock").take();
        if let Some(writer) = self.writer.lock().expect("writer lock").take() {
            let _ = writer.join();
        }
    }
}

impl Drop for SqliteHistory {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn read_page(conn: &Connection, channel: &str, range: Range) -> Result<Option<Page>, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let state: Option<(String, u64)> = tx
        .prepare_cached("SELECT epoch, top FROM channels WHERE name = ?1")?
        .query_row([channel], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((epoch, top)) = state else {
        return Ok(None);
    };
    let earliest: Option<u64> = tx
        .prepare_cached("SELECT MIN(offset) FROM publications WHERE channel = ?1")?
        .query_row([channel], |r| r.get(0))?;
    let (sql, a, b) = match range {
        Range::Latest { limit } => (
            "SELECT offset, ts, sender, data FROM publications WHERE channel = ?1 AND offset > ?2 \
             ORDER BY offset DESC LIMIT ?3",
            0,
            limit,
        ),
        Range::Before { before, limit } => (
            "SELECT offset, ts, sender, data FROM publications WHERE channel = ?1 AND offset < ?2 \
             ORDER BY offset DESC LIMIT ?3",
            before,
            limit,
        ),
        Range::After { after, limit } => (
            "SELECT offset, ts, sender, data FROM publications WHERE channel = ?1 AND offset > ?2 \
             ORDER BY offset ASC LIMIT ?3",
            after,
            limit,
        ),
    };
    let mut publications = tx
        .prepare_cached(sql)?
        .query_map(params![channel, a, b], |r| {
            let data: String = r.get(3)?;
            Ok(Publication {
                offset: r.get(0)?,
                ts: r.get(1)?,
                from: r.get(2)?,
                data: RawValue::from_string(data).unwrap_or_else(|_| {
                    RawValue::from_string("null".into()).expect("null is JSON")
                }),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if !matches!(range, Range::After { .. }) {
        publications.reverse();
    }
    tx.finish()?;
    Ok(Some(Page {
        state: ChannelState {
            epoch: epoch.into(),
            top,
        },
        earliest: earliest.unwrap_or(0),
        publications,
    }))
}

/// Creates the channel's row, with a fresh epoch, unless it exists.
fn create_channel(tx: &rusqlite::Transaction<'_>, channel: &str) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT OR IGNORE INTO channels (name, epoch, top) VALUES (?1, ?2, 0)")?
        .execute(params![channel, new_epoch()])?;
    Ok(())
}

struct Writer {
    conn: Connection,
    config: HistoryConfig,
    on_commit: CommitHook,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < self.config.group_commit_max {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
        }
    }

    /// Runs a batch in one transaction; on failure every job in it fails.
    fn commit(&mut self, batch: &mut Vec<Job>) {
        let mut committed = Vec::new();
        let mut ensured = Vec::new();
        let result = self.apply(batch, &mut committed, &mut ensured);
        let jobs = std::mem::take(batch);
        match result {
            Ok(()) => {
                METRICS.history_commits.fetch_add(1, Relaxed);
                METRICS
                    .history_writes
                    .fetch_add(committed.len() as u64, Relaxed);
                if !committed.is_empty() {
                    (self.on_commit)(&committed);
                }
                let mut committed = committed.iter();
                let mut ensured = ensured.into_iter();
                for job in jobs {
                    match job {
                        Job::Append(a) => {
                            (a.ack)(Ok(committed.next().expect("one commit per append")))
                        }
                        Job::Ensure(_, reply) => {
                            let _ = reply.send(Ok(ensured.next().expect("one state per ensure")));
                        }
                        Job::TrimByAge(_) => {}
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "history commit failed");
                for job in jobs {
                    match job {
                        Job::Append(a) => (a.ack)(Err(&e)),
                        Job::Ensure(_, reply) => {
                            let _ = reply.send(Err(e.clone()));
                        }
                        Job::TrimByAge(_) => {}
                    }
                }
            }
        }
    }

    fn apply(
        &mut self,
        batch: &[Job],
        committed: &mut Vec<Committed>,
        ensured: &mut Vec<ChannelState>,
    ) -> Result<(), StoreError> {
        let max_count = self.config.max_count;
        let tx = self.conn.transaction()?;
        let mut touched: Vec<(Arc<str>, u64)> = Vec::new();
        for job in batch {
            match job {
                Job::Ensure(channel, _) => {
                    create_channel(&tx, channel)?;
                    let (epoch, top): (String, u64) = tx
                        .prepare_cached("SELECT epoch, top FROM channels WHERE name = ?1")?
                        .query_row([&**channel], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    ensured.push(ChannelState {
                        epoch: epoch.into(),
                        top,
                    });
                }
                Job::Append(a) => {
                    create_channel(&tx, &a.channel)?;
                    let (offset, epoch): (u64, String) = tx
                        .prepare_cached("UPDATE channels SET top = top + 1 WHERE name = ?1 RETURNING top, epoch")?
                        .query_row([&*a.channel], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    let ts = now_millis();
                    tx.prepare_cached(
                        "INSERT INTO publications (channel, offset, ts, sender, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![&*a.channel, offset, ts, a.from.as_deref(), a.data.get()])?;
                    match touched.iter_mut().find(|(c, _)| *c == a.channel) {
                        Some(entry) => entry.1 = offset,
                        None => touched.push((a.channel.clone(), offset)),
                    }
                    committed.push(Committed {
                        channel: a.channel.clone(),
                        epoch: epoch.into(),
                        publication: Publication {
                            offset,
                            data: a.data.clone(),
                            from: a.from.as_deref().map(str::to_owned),
                            ts,
                        },
                    });
                }
                Job::TrimByAge(cutoff) => {
                    let n = tx
                        .prepare_cached("DELETE FROM publications WHERE ts < ?1")?
                        .execute([cutoff])?;
                    METRICS.history_trimmed.fetch_add(n as u64, Relaxed);
                }
            }
        }
        for (channel, top) in touched {
            if top > max_count {
                let n = tx
                    .prepare_cached("DELETE FROM publications WHERE channel = ?1 AND offset <= ?2")?
                    .execute(params![&*channel, top - max_count])?;
                METRICS.history_trimmed.fetch_add(n as u64, Relaxed);
            }
        }
        tx.commit()?;
        Ok(())
    }
}
