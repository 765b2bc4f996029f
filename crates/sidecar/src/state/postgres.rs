//! `state.postgresql`: state in a PostgreSQL table.
//!
//! Table `<tableName>(key TEXT PRIMARY KEY, value BYTEA, etag BIGINT,
//! expires_ms BIGINT NULL)`. Etag checks are part of the writes themselves
//! (`UPDATE ... WHERE etag = $n`, `INSERT ... ON CONFLICT DO NOTHING` for
//! first-write), so concurrent writers cannot both win; a request's
//! operations run in one SQL transaction. A lost connection is re-opened on
//! the next call. Every statement is prepared once per connection
//! ([`Prepared`]), so a call costs one round trip per statement, not two;
//! expired rows are purged on each write through a partial index on
//! `expires_ms`, not a scan of the table.
//!
//! Metadata: `connectionString` (libpq key=value or a `postgres://` URL),
//! `tableName` (default `state`).

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Statement};

use super::{
    Concurrency, DeleteRequest, Operation, SetRequest, StateItem, StateStore, StoreError, new_etag,
    parse_etag,
};
use crate::unix_millis;

/// A PostgreSQL-backed [`StateStore`].
pub struct PostgresStore {
    connection_string: String,
    table: String,
    session: Mutex<Option<Session>>,
}

/// One connection and the statements prepared on it.
struct Session {
    client: Client,
    sql: Prepared,
}

/// Every statement the store runs, prepared on one connection.
struct Prepared {
    get: Statement,
    /// An etag'd write: updates only the live row with that etag.
    update_if_etag: Statement,
    /// First-write without an etag: clears an expired row, then inserts
    /// unless a live one exists.
    delete_expired_key: Statement,
    insert_if_absent: Statement,
    /// Last-write without an etag.
    upsert: Statement,
    delete_if_etag: Statement,
    delete: Statement,
    purge_expired: Statement,
}

impl Prepared {
    async fn on(client: &Client, table: &str) -> Result<Self, tokio_postgres::Error> {
        Ok(Prepared {
            get: client
                .prepare(&format!(
                    "SELECT value, etag FROM {table}
                     WHERE key = $1 AND (expires_ms IS NULL OR expires_ms > $2)"
                ))
                .await?,
            update_if_etag: client
                .prepare(&format!(
                    "UPDATE {table} SET value = $2, etag = $3, expires_ms = $4
                     WHERE key = $1 AND etag = $5 AND (expires_ms IS NULL OR expires_ms > $6)"
                ))
                .await?,
            delete_expired_key: client
                .prepare(&format!(
                    "DELETE FROM {table} WHERE key = $1 AND expires_ms <= $2"
                ))
                .await?,
            insert_if_absent: client
                .prepare(&format!(
                    "INSERT INTO {table} (key, value, etag, expires_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (key) DO NOTHING"
                ))
                .await?,
            upsert: client
                .prepare(&format!(
                    "INSERT INTO {table} (key, value, etag, expires_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (key) DO UPDATE SET value = $2, etag = $3, expires_ms = $4"
                ))
                .await?,
            delete_if_etag: client
                .prepare(&format!(
                    "DELETE FROM {table} WHERE key = $1 AND etag = $2
                     AND (expires_ms IS NULL OR expires_ms > $3)"
                ))
                .await?,
            delete: client
                .prepare(&format!("DELETE FROM {table} WHERE key = $1"))
                .await?,
            purge_expired: client
                .prepare(&format!(
                    "DELETE FROM {table} WHERE expires_ms IS NOT NULL AND expires_ms <= $1"
                ))
                .await?,
        })
    }
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
            session: Mutex::new(None),
        };
        let mut guard = store.session.lock().await;
        store.connected(&mut guard).await?;
        drop(guard);
        Ok(store)
    }

    /// The live session, connecting (again) if there is none or it closed:
    /// the table and its index are created if missing, then the statements
    /// prepared.
    async fn connected<'a>(
        &self,
        slot: &'a mut Option<Session>,
    ) -> Result<&'a mut Session, StoreError> {
        if slot.as_ref().is_none_or(|s| s.client.is_closed()) {
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
            let table = &self.table;
            client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {table} (
                         key        TEXT PRIMARY KEY,
                         value      BYTEA NOT NULL,
                         etag       BIGINT NOT NULL,
                         expires_ms BIGINT
                     );
                     CREATE INDEX IF NOT EXISTS {table}_expires ON {table} (expires_ms)
                         WHERE expires_ms IS NOT NULL;"
                ))
                .await
                .map_err(backend)?;
            let sql = Prepared::on(&client, table).await.map_err(backend)?;
            *slot = Some(Session { client, sql });
        }
        slot.as_mut()
            .ok_or_else(|| StoreError::Backend("no PostgreSQL connection".into()))
    }
}

async fn apply_set(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &Prepared,
    request: &SetRequest,
) -> Result<(), StoreError> {
    let now = unix_millis();
    let expires = request.expires_at_millis(now);
    let etag = request.etag.as_deref().map(parse_etag).transpose()?;
    let written = match (etag, request.concurrency) {
        (Some(expected), _) => tx
            .execute(
                &sql.update_if_etag,
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
            tx.execute(&sql.delete_expired_key, &[&request.key, &now])
                .await
                .map_err(backend)?;
            tx.execute(
                &sql.insert_if_absent,
                &[&request.key, &request.value, &new_etag(), &expires],
            )
            .await
            .map_err(backend)?
        }
        (None, Concurrency::LastWrite) => tx
            .execute(
                &sql.upsert,
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
    sql: &Prepared,
    request: &DeleteRequest,
) -> Result<(), StoreError> {
    match request.etag.as_deref().map(parse_etag).transpose()? {
        Some(expected) => {
            let deleted = tx
                .execute(
                    &sql.delete_if_etag,
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
            tx.execute(&sql.delete, &[&request.key])
                .await
                .map_err(backend)?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl StateStore for PostgresStore {
    async fn get(&self, key: &str) -> Result<Option<StateItem>, StoreError> {
        let mut guard = self.session.lock().await;
        let session = self.connected(&mut guard).await?;
        let row = session
            .client
            .query_opt(&session.sql.get, &[&key, &unix_millis()])
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
        let mut guard = self.session.lock().await;
        let Session { client, sql } = self.connected(&mut guard).await?;
        let tx = client.transaction().await.map_err(backend)?;
        for operation in &operations {
            match operation {
                Operation::Upsert(request) => apply_set(&tx, sql, request).await?,
                Operation::Delete(request) => apply_delete(&tx, sql, request).await?,
            }
        }
        tx.execute(&sql.purge_expired, &[&unix_millis()])
            .await
            .map_err(backend)?;
        // Dropping `tx` on an early return above rolls everything back.
        tx.commit().await.map_err(backend)
    }
}
