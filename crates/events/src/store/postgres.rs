//! Events in PostgreSQL.

use tokio_postgres::{Client, NoTls};

use super::{Count, EventStore, StoreError, StoredEvent};
use crate::ImageEvent;

/// A PostgreSQL event store.
pub struct PostgresEvents {
    client: Client,
}

fn database(err: impl std::fmt::Display) -> StoreError {
    StoreError::Database(err.to_string())
}

impl PostgresEvents {
    /// Connects to `url` and creates the table if needed.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| StoreError::Database(format!("PostgreSQL: {e}")))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::error!(error = %err, "the PostgreSQL connection failed");
            }
        });
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS image_events (
                     id TEXT PRIMARY KEY,
                     time TEXT NOT NULL,
                     api TEXT NOT NULL,
                     status INTEGER NOT NULL,
                     input_bytes BIGINT NOT NULL,
                     output_bytes BIGINT NOT NULL,
                     milliseconds DOUBLE PRECISION NOT NULL,
                     client TEXT
                 )",
            )
            .await
            .map_err(database)?;
        Ok(PostgresEvents { client })
    }
}

#[async_trait::async_trait]
impl EventStore for PostgresEvents {
    fn kind(&self) -> &'static str {
        "postgresql"
    }

    async fn insert(&self, id: &str, event: &ImageEvent) -> Result<bool, StoreError> {
        let inserted = self
            .client
            .execute(
                "INSERT INTO image_events
                     (id, time, api, status, input_bytes, output_bytes, milliseconds, client)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                &[
                    &id,
                    &event.time,
                    &event.api,
                    &i32::from(event.status),
                    &(event.input_bytes as i64),
                    &(event.output_bytes as i64),
                    &event.milliseconds,
                    &event.client,
                ],
            )
            .await
            .map_err(database)?;
        Ok(inserted == 1)
    }

    async fn page(&self, limit: u32, offset: u32) -> Result<(Vec<StoredEvent>, u64), StoreError> {
        let rows = self
            .client
            .query(
                "SELECT id, time, api, status, input_bytes, output_bytes, milliseconds, client
                 FROM image_events ORDER BY time DESC, id DESC LIMIT $1 OFFSET $2",
                &[&i64::from(limit), &i64::from(offset)],
            )
            .await
            .map_err(database)?;
        let events = rows
            .iter()
            .map(|row| StoredEvent {
                id: row.get(0),
                event: ImageEvent {
                    time: row.get(1),
                    api: row.get(2),
                    status: u16::try_from(row.get::<_, i32>(3)).unwrap_or(0),
                    input_bytes: row.get::<_, i64>(4).try_into().unwrap_or(0),
                    output_bytes: row.get::<_, i64>(5).try_into().unwrap_or(0),
                    milliseconds: row.get(6),
                    client: row.get(7),
                },
            })
            .collect();
        let total: i64 = self
            .client
            .query_one("SELECT COUNT(*) FROM image_events", &[])
            .await
            .map_err(database)?
            .get(0);
        Ok((events, total.try_into().unwrap_or(0)))
    }

    async fn summary(&self) -> Result<Vec<Count>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT api, status, COUNT(*) FROM image_events GROUP BY api, status ORDER BY api, status",
                &[],
            )
            .await
            .map_err(database)?;
        Ok(rows
            .iter()
            .map(|row| Count {
                api: row.get(0),
                status: u16::try_from(row.get::<_, i32>(1)).unwrap_or(0),
                count: row.get::<_, i64>(2).try_into().unwrap_or(0),
            })
            .collect())
    }
}
