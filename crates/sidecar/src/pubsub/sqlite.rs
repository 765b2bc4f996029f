//! `pubsub.sqlite`: the embedded broker, one SQLite file that every sidecar
//! on the machine opens (dapr-wasm's own type; daprd has none like it).
//!
//! It is what `dapr-wasm up` falls back to when a pub/sub component's
//! broker cannot be reached (`--embedded-pubsub-fallback`), so the demo
//! runs on a machine without Redis; it can also be named in a component.
//!
//! - A publish is one row in `events`, stored (WAL, synchronous) before
//!   the publisher gets its answer.
//! - Each app reads a topic as its `consumerID`, in order, from the first
//!   event it has not acknowledged: events published before it first
//!   subscribed are delivered too, as with Redis. An acknowledgement is a
//!   row in `acks`; an event never acknowledged (its sidecar died) is read
//!   again when the sidecar starts again.
//! - Other processes' publishes are seen by polling every `pollInterval`
//!   (default 50 ms); this process's own wake the readers at once.
//!
//! Metadata: `connectionString` (the file; default `pubsub.db` in the data
//! directory), `pollInterval`. Events are kept, as in a Redis stream
//! without `maxLenApprox`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, mpsc};

use super::{Broker, BrokerError, Message, SUBSCRIPTION_BUFFER, hand_on, metadata_duration};

/// How many events one read takes.
const READ_BATCH: usize = 64;

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS events_by_topic ON events (topic, id);
    CREATE TABLE IF NOT EXISTS acks (
        consumer TEXT NOT NULL,
        event INTEGER NOT NULL,
        PRIMARY KEY (consumer, event)
    ) WITHOUT ROWID;
";

/// The embedded SQLite broker.
pub struct SqliteBroker {
    connection: Arc<Mutex<Connection>>,
    /// Wakes this process's readers after a publish.
    published: Arc<Notify>,
    poll_interval: Duration,
}

fn backend(err: impl std::fmt::Display) -> BrokerError {
    BrokerError::Backend(err.to_string())
}

impl SqliteBroker {
    /// Opens (creating) the component's file; `data_dir` holds the default.
    pub async fn open(
        properties: &HashMap<String, String>,
        data_dir: &Path,
    ) -> Result<Self, BrokerError> {
        let path = properties
            .get("connectionString")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("pubsub.db"));
        let poll_interval =
            metadata_duration(properties, "pollInterval", Duration::from_millis(50))?;
        let connection = tokio::task::spawn_blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    BrokerError::Backend(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            crate::sqlite_file::open_shared(&path, SCHEMA, crate::sqlite_file::BUSY_TIMEOUT)
                .map_err(|e| BrokerError::Backend(format!("{}: {e}", path.display())))
        })
        .await
        .map_err(backend)??;
        Ok(SqliteBroker {
            connection: Arc::new(Mutex::new(connection)),
            published: Arc::new(Notify::new()),
            poll_interval,
        })
    }
}

/// Runs `work` on the connection, off the async runtime.
async fn with_connection<T: Send + 'static>(
    connection: &Arc<Mutex<Connection>>,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, BrokerError> {
    let connection = connection.clone();
    tokio::task::spawn_blocking(move || {
        let connection = connection.lock().unwrap_or_else(|p| p.into_inner());
        work(&connection)
    })
    .await
    .map_err(backend)?
    .map_err(backend)
}

/// The next events of `topic` after `after` that `consumer` has not
/// acknowledged.
fn unacknowledged(
    connection: &Connection,
    topic: &str,
    consumer: &str,
    after: i64,
) -> rusqlite::Result<Vec<(i64, Vec<u8>)>> {
    let mut statement = connection.prepare_cached(
        "SELECT id, payload FROM events
         WHERE topic = ?1 AND id > ?2
           AND NOT EXISTS (SELECT 1 FROM acks WHERE consumer = ?3 AND event = events.id)
         ORDER BY id LIMIT ?4",
    )?;
    let rows = statement.query_map(params![topic, after, consumer, READ_BATCH as i64], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?;
    rows.collect()
}

#[async_trait::async_trait]
impl Broker for SqliteBroker {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), BrokerError> {
        let topic = topic.to_string();
        with_connection(&self.connection, move |connection| {
            connection
                .prepare_cached("INSERT INTO events (topic, payload) VALUES (?1, ?2)")?
                .execute(params![topic, payload])
        })
        .await?;
        self.published.notify_waiters();
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        consumer_id: &str,
    ) -> Result<mpsc::Receiver<Message>, BrokerError> {
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let (connection, published, poll_interval) = (
            self.connection.clone(),
            self.published.clone(),
            self.poll_interval,
        );
        let (topic, consumer) = (topic.to_string(), consumer_id.to_string());
        // Check the file answers before saying the subscription is made.
        let probe = topic.clone();
        with_connection(&connection, move |c| {
            c.query_row(
                "SELECT id FROM events WHERE topic = ?1 LIMIT 1",
                [probe],
                |r| r.get::<_, i64>(0),
            )
            .optional()
        })
        .await?;
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                let woken = published.notified();
                let (t, c) = (topic.clone(), consumer.clone());
                let batch = match with_connection(&connection, move |connection| {
                    unacknowledged(connection, &t, &c, after)
                })
                .await
                {
                    Ok(batch) => batch,
                    Err(err) => {
                        tracing::warn!(%topic, error = %err, "cannot read the embedded broker; trying again");
                        Vec::new()
                    }
                };
                if batch.is_empty() {
                    tokio::select! {
                        () = sender.closed() => return,
                        () = woken => {}
                        () = tokio::time::sleep(poll_interval) => {}
                    }
                    continue;
                }
                for (id, payload) in batch {
                    after = id;
                    let (connection, consumer) = (connection.clone(), consumer.clone());
                    let acknowledge = move || async move {
                        with_connection(&connection, move |connection| {
                            connection
                                .prepare_cached(
                                    "INSERT OR IGNORE INTO acks (consumer, event) VALUES (?1, ?2)",
                                )?
                                .execute(params![consumer, id])
                                .map(drop)
                        })
                        .await
                    };
                    if !hand_on(&sender, payload, acknowledge).await {
                        return;
                    }
                }
            }
        });
        Ok(receiver)
    }
}
