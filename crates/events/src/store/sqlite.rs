//! Events in an SQLite file (the default). Queries run on tokio's
//! blocking pool.

use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::{Count, EventStore, StoreError, StoredEvent};
use crate::ImageEvent;

/// An SQLite event store.
pub struct SqliteEvents {
    connection: Arc<Mutex<Connection>>,
}

fn database(err: impl std::fmt::Display) -> StoreError {
    StoreError::Database(err.to_string())
}

impl SqliteEvents {
    /// Opens (creating) the file at `path`.
    pub fn open(path: &str) -> Result<Self, StoreError> {
        if let Some(dir) = std::path::Path::new(path).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let connection = Connection::open(path).map_err(database)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode=WAL;
                 PRAGMA busy_timeout=5000;
                 CREATE TABLE IF NOT EXISTS image_events (
                     id TEXT PRIMARY KEY,
                     time TEXT NOT NULL,
                     api TEXT NOT NULL,
                     status INTEGER NOT NULL,
                     input_bytes INTEGER NOT NULL,
                     output_bytes INTEGER NOT NULL,
                     milliseconds REAL NOT NULL,
                     client TEXT
                 );",
            )
            .map_err(database)?;
        Ok(SqliteEvents {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            f(&connection)
        })
        .await
        .map_err(database)?
        .map_err(database)
    }
}

fn event_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        id: row.get(0)?,
        event: ImageEvent {
            time: row.get(1)?,
            api: row.get(2)?,
            status: row.get(3)?,
            input_bytes: row.get::<_, i64>(4)?.try_into().unwrap_or(0),
            output_bytes: row.get::<_, i64>(5)?.try_into().unwrap_or(0),
            milliseconds: row.get(6)?,
            client: row.get(7)?,
        },
    })
}

#[async_trait::async_trait]
impl EventStore for SqliteEvents {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn insert(&self, id: &str, event: &ImageEvent) -> Result<bool, StoreError> {
        let (id, event) = (id.to_string(), event.clone());
        self.with(move |c| {
            c.prepare_cached(
                "INSERT INTO image_events
                     (id, time, api, status, input_bytes, output_bytes, milliseconds, client)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                id,
                event.time,
                event.api,
                event.status,
                event.input_bytes as i64,
                event.output_bytes as i64,
                event.milliseconds,
                event.client
            ])
            .map(|inserted| inserted == 1)
        })
        .await
    }

    async fn page(&self, limit: u32, offset: u32) -> Result<(Vec<StoredEvent>, u64), StoreError> {
        self.with(move |c| {
            let events = c
                .prepare_cached(
                    "SELECT id, time, api, status, input_bytes, output_bytes, milliseconds, client
                     FROM image_events ORDER BY time DESC, id DESC LIMIT ?1 OFFSET ?2",
                )?
                .query_map(params![limit, offset], event_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let total: Option<i64> = c
                .query_row("SELECT COUNT(*) FROM image_events", [], |r| r.get(0))
                .optional()?;
            Ok((events, total.unwrap_or(0).try_into().unwrap_or(0)))
        })
        .await
    }

    async fn summary(&self) -> Result<Vec<Count>, StoreError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT api, status, COUNT(*) FROM image_events GROUP BY api, status ORDER BY api, status",
            )?
            .query_map([], |row| {
                Ok(Count {
                    api: row.get(0)?,
                    status: row.get(1)?,
                    count: row.get::<_, i64>(2)?.try_into().unwrap_or(0),
                })
            })?
            .collect()
        })
        .await
    }
}
