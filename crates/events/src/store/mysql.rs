//! Events in MariaDB or MySQL (the seed's database).

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, params};

use super::{Count, EventStore, StoreError, StoredEvent};
use crate::ImageEvent;

/// A MariaDB/MySQL event store.
pub struct MysqlEvents {
    pool: Pool,
}

fn database(err: impl std::fmt::Display) -> StoreError {
    StoreError::Database(err.to_string())
}

/// One row, as selected.
type Row = (String, String, String, u16, u64, u64, f64, Option<String>);

impl MysqlEvents {
    /// Connects to `url` (`mariadb://` is read as `mysql://`) and creates
    /// the table if needed.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let url = url.replacen("mariadb://", "mysql://", 1);
        let options =
            mysql_async::Opts::from_url(&url).map_err(|e| StoreError::Url(e.to_string()))?;
        let pool = Pool::new(options);
        let mut connection = pool
            .get_conn()
            .await
            .map_err(|e| StoreError::Database(format!("MariaDB: {e}")))?;
        connection
            .query_drop(
                "CREATE TABLE IF NOT EXISTS image_events (
                     id VARCHAR(64) PRIMARY KEY,
                     time VARCHAR(40) NOT NULL,
                     api VARCHAR(32) NOT NULL,
                     status SMALLINT UNSIGNED NOT NULL,
                     input_bytes BIGINT UNSIGNED NOT NULL,
                     output_bytes BIGINT UNSIGNED NOT NULL,
                     milliseconds DOUBLE NOT NULL,
                     client VARCHAR(64)
                 )",
            )
            .await
            .map_err(database)?;
        Ok(MysqlEvents { pool })
    }

    async fn connection(&self) -> Result<mysql_async::Conn, StoreError> {
        self.pool.get_conn().await.map_err(database)
    }
}

#[async_trait::async_trait]
impl EventStore for MysqlEvents {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    async fn insert(&self, id: &str, event: &ImageEvent) -> Result<bool, StoreError> {
        let mut connection = self.connection().await?;
        connection
            .exec_drop(
                "INSERT IGNORE INTO image_events
                     (id, time, api, status, input_bytes, output_bytes, milliseconds, client)
                 VALUES (:id, :time, :api, :status, :input_bytes, :output_bytes, :milliseconds, :client)",
                params! {
                    "id" => id,
                    "time" => &event.time,
                    "api" => &event.api,
                    "status" => event.status,
                    "input_bytes" => event.input_bytes as u64,
                    "output_bytes" => event.output_bytes as u64,
                    "milliseconds" => event.milliseconds,
                    "client" => &event.client,
                },
            )
            .await
            .map_err(database)?;
        Ok(connection.affected_rows() == 1)
    }

    async fn page(&self, limit: u32, offset: u32) -> Result<(Vec<StoredEvent>, u64), StoreError> {
        let mut connection = self.connection().await?;
        let rows: Vec<Row> = connection
            .exec(
                "SELECT id, time, api, status, input_bytes, output_bytes, milliseconds, client
                 FROM image_events ORDER BY time DESC, id DESC LIMIT :limit OFFSET :offset",
                params! { "limit" => limit, "offset" => offset },
            )
            .await
            .map_err(database)?;
        let total: Option<u64> = connection
            .query_first("SELECT COUNT(*) FROM image_events")
            .await
            .map_err(database)?;
        let events = rows
            .into_iter()
            .map(
                |(id, time, api, status, input, output, milliseconds, client)| StoredEvent {
                    id,
                    event: ImageEvent {
                        time,
                        api,
                        status,
                        input_bytes: usize::try_from(input).unwrap_or(0),
                        output_bytes: usize::try_from(output).unwrap_or(0),
                        milliseconds,
                        client,
                    },
                },
            )
            .collect();
        Ok((events, total.unwrap_or(0)))
    }

    async fn summary(&self) -> Result<Vec<Count>, StoreError> {
        let mut connection = self.connection().await?;
        let rows: Vec<(String, u16, u64)> = connection
            .query(
                "SELECT api, status, COUNT(*) FROM image_events GROUP BY api, status ORDER BY api, status",
            )
            .await
            .map_err(database)?;
        Ok(rows
            .into_iter()
            .map(|(api, status, count)| Count { api, status, count })
            .collect())
    }
}
