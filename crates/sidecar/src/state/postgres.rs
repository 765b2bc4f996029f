//! `state.postgresql`: state in a PostgreSQL table.
//!
//! Table `<tableName>(key TEXT PRIMARY KEY, value BYTEA, etag BIGINT,
//! expires_ms BIGINT NULL)`. Etag checks are part of the writes themselves
//! (`UPDATE ... WHERE etag = $n`, `INSERT ... ON CONFLICT DO NOTHING` for
//! first-write), so concurrent writers cannot both win; a request's
//! operations run in one SQL transaction. A lost connection is re-opened on
//! the next call.
//!
//! Metadata: `connectionString` (libpq key=value or a `postgres://` URL),
//! `tableName` (default `state`).

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::{
    Concurrency, DeleteRequest, Operation, SetRequest, StateItem, StateStore, StoreError, new_etag,
    parse_etag,
};
use crate::unix_millis;

/// A PostgreSQL-backed [`StateStore`].
pub struct PostgresStore {
    connection_string: String,
    table: String,
    client: Mutex<Option<Client>>,
}

fn backend(err: tokio_postgres::Error) -> StoreError {
    let detail = err
        .as_db_error()
        .map(|db| db.message().to_string())
        .unwrap_or_else(|| err.to_string());
    StoreError::Backend(detail)
}

impl PostgresStore {
    /// Connects and creates the table if needed.
    pub async fn open(properties: &HashMap<String, String>) -> Result<Self, StoreError> {
        let connection_string = properties
            .get("connectionString")
            .filter(|c| !c.is_empty())
            .cloned()
            .ok_or_else(|| StoreError::Backend("metadata `connectionString` is required".into()))?;
        let table = properties
            .get("tableName")
            .filter(|t| !t.is_empty())
            .cloned()
            .unwrap_or_else(|| "state".into());
        if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::Backend(format!(
                "tableName `{table}` must be letters, digits or `_`"
            )));
        }
        let store = PostgresStore {
            connection_string,
            table,
            client: Mutex::new(None),
        };
        let mut guard = store.client.lock().await;
        let client = store.connected(&mut guard).await?;
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                     key        TEXT PRIMARY KEY,
                     value      BYTEA NOT NULL,
                     etag       BIGINT NOT NULL,
                     expires_ms BIGINT
                 )",
                t = store.table
            ))
            .await
            .map_err(backend)?;
        drop(guard);
        Ok(store)
    }

    /// The live client, connecting (again) if there is none or it closed.
    async fn connected<'a>(
        &self,
        slot: &'a mut Option<Client>,
    ) -> Result<&'a mut Client, StoreError> {
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, connection) = tokio::time::timeout(
                Duration::from_secs(5),
                tokio_postgres::connect(&self.connection_string, NoTls),
            )
            .await
            .map_err(|_| StoreError::Backend("no answer from PostgreSQL within 5s".into()))?
            .map_err(backend)?;
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::warn!(error = %err, "PostgreSQL connection closed");
                }
            });
            *slot = Some(client);
        }
        slot.as_mut()
            .ok_or_else(|| StoreError::Backend("no PostgreSQL connection".into()))
    }
}

async fn apply_set(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    request: &SetRequest,
) -> Result<(), StoreError> {
    let now = unix_millis();
    let expires = request.expires_at_millis(now);
    let etag = request.etag.as_deref().map(parse_etag).transpose()?;
    let written = match (etag, request.concurrency) {
        (Some(expected), _) => tx
            .execute(
                &format!(
                    "UPDATE {table} SET value = $2, etag = $3, expires_ms = $4
                     WHERE key = $1 AND etag = $5 AND (expires_ms IS NULL OR expires_ms > $6)"
                ),
                &[
                    &request.key,
                    &request.value,
                    &new_etag(),
                    &expires,
                    &expected,
                    &now,
                ],
            )
            .await
            .map_err(backend)?,
        (None, Concurrency::FirstWrite) => {
            tx.execute(
                &format!("DELETE FROM {table} WHERE key = $1 AND expires_ms <= $2"),
                &[&request.key, &now],
            )
            .await
            .map_err(backend)?;
            tx.execute(
                &format!(
                    "INSERT INTO {table} (key, value, etag, expires_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (key) DO NOTHING"
                ),
                &[&request.key, &request.value, &new_etag(), &expires],
            )
            .await
            .map_err(backend)?
        }
        (None, Concurrency::LastWrite) => tx
            .execute(
                &format!(
                    "INSERT INTO {table} (key, value, etag, expires_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (key) DO UPDATE SET value = $2, etag = $3, expires_ms = $4"
                ),
                &[&request.key, &request.value, &new_etag(), &expires],
            )
            .await
            .map_err(backend)?,
    };
    if written == 0 {
        return Err(StoreError::EtagMismatch(format!(
            "the etag does not match the current version of key {} (or first-write found it)",
            request.key
        )));
    }
    Ok(())
}

async fn apply_delete(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    request: &DeleteRequest,
) -> Result<(), StoreError> {
    match request.etag.as_deref().map(parse_etag).transpose()? {
        Some(expected) => {
            let deleted = tx
                .execute(
                    &format!(
                        "DELETE FROM {table} WHERE key = $1 AND etag = $2
                         AND (expires_ms IS NULL OR expires_ms > $3)"
                    ),
                    &[&request.key, &expected, &unix_millis()],
                )
                .await
                .map_err(backend)?;
            if deleted == 0 {
                return Err(StoreError::EtagMismatch(format!(
                    "the etag does not match the current version of key {}",
                    request.key
                )));
            }
        }
        None => {
            tx.execute(
                &format!("DELETE FROM {table} WHERE key = $1"),
                &[&request.key],
            )
            .await
            .map_err(backend)?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl StateStore for PostgresStore {
    async fn get(&self, key: &str) -> Result<Option<StateItem>, StoreError> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT value, etag FROM {} WHERE key = $1
                     AND (expires_ms IS NULL OR expires_ms > $2)",
                    self.table
                ),
                &[&key, &unix_millis()],
            )
            .await
            .map_err(backend)?;
        Ok(row.map(|row| StateItem {
            value: row.get(0),
            etag: row.get::<_, i64>(1).to_string(),
        }))
    }

    async fn set(&self, request: SetRequest) -> Result<(), StoreError> {
        self.transact(vec![Operation::Upsert(request)]).await
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), StoreError> {
        self.transact(vec![Operation::Delete(request)]).await
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StoreError> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        let tx = client.transaction().await.map_err(backend)?;
        for operation in &operations {
            match operation {
                Operation::Upsert(request) => apply_set(&tx, &self.table, request).await?,
                Operation::Delete(request) => apply_delete(&tx, &self.table, request).await?,
            }
        }
        tx.execute(
            &format!(
                "DELETE FROM {} WHERE expires_ms IS NOT NULL AND expires_ms <= $1",
                self.table
            ),
            &[&unix_millis()],
        )
        .await
        .map_err(backend)?;
        // Dropping `tx` on an early return above rolls everything back.
        tx.commit().await.map_err(backend)
    }
}
