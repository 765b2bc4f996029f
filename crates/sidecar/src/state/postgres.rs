//! `state.postgresql`: state in a PostgreSQL table.
//!
//! Table `<tableName>(key TEXT PRIMARY KEY, value BYTEA, etag BIGINT,
//! expires_ms BIGINT NULL)`. Etag checks are part of the writes themselves
//! (`UPDATE ... WHERE etag = $n`, `INSERT ... ON CONFLICT DO NOTHING` for
//! first-write), so concurrent writers cannot both win; a request's
//! operations run in one SQL transaction. Expired rows are purged on each
//! write through a partial index on `expires_ms`, not a scan of the table.
//!
//! Calls run on a pool of up to `maxConns` connections ([`SessionPool`]),
//! as daprd's pgx pool does, so a write waiting for a row lock held
//! elsewhere stalls only itself. Every statement is prepared once per
//! connection ([`Prepared`]), so a call costs one round trip per statement,
//! not two. A connection goes back to the pool only when its call finished:
//! one whose call was cancelled (the store timeout, a client gone) may
//! still have a statement running, so it is closed instead, and the server
//! rolls back what that call left open. A closed connection is replaced on
//! the next call. One left idle for `connectionMaxIdleTime` is closed, so
//! that a burst's connections do not hold the server's slots for good.
//!
//! Metadata: `connectionString` (libpq key=value or a `postgres://` URL;
//! `application_name` defaults to `dapr-wasm`), `tableName` (default
//! `state`), `maxConns` (default, as Dapr's: 4 or the number of CPUs,
//! whichever is more; 0 or less means the default),
//! `connectionMaxIdleTime` (a duration or a number of seconds; unset or 0
//! means 30 minutes, the default of daprd's pgx pool).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::{Client, NoTls, Statement};

use super::{
    Concurrency, DeleteRequest, Operation, SetRequest, StateItem, StateStore, StoreError,
    max_connections, max_idle_time, new_etag, parse_etag,
};
use crate::unix_millis;

/// A PostgreSQL-backed [`StateStore`].
pub struct PostgresStore {
    sessions: Arc<SessionPool>,
}

/// One connection and the statements prepared on it.
struct Session {
    client: Client,
    sql: Prepared,
    /// When it last went back to the pool.
    idle_since: Instant,
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
                    "SELECT value, etag, expires_ms FROM {table}
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

/// Up to `maxConns` sessions; idle ones wait here for the next call, for
/// up to `connectionMaxIdleTime`.
struct SessionPool {
    config: tokio_postgres::Config,
    /// The state table's name (checked: letters, digits and `_`).
    table: String,
    /// The most recently used last.
    idle: std::sync::Mutex<Vec<Session>>,
    max_idle_time: Duration,
    /// One permit per session that may exist, idle or in use.
    permits: Semaphore,
}

/// A session lent to one call. [`PooledSession::release`] gives it back
/// to the pool; dropped without it (the call was cancelled mid-statement),
/// the connection closes.
struct PooledSession<'a> {
    pool: &'a SessionPool,
    session: Session,
    _permit: SemaphorePermit<'a>,
}

impl SessionPool {
    /// Lends an idle session, or opens one if none is idle and fewer than
    /// `maxConns` exist; otherwise waits for one.
    async fn session(&self) -> Result<PooledSession<'_>, StoreError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Backend("the PostgreSQL pool is closed".into()))?;
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            std::iter::from_fn(|| idle.pop())
                .find(|s| !s.client.is_closed() && s.idle_since.elapsed() < self.max_idle_time)
        };
        let session = match idle {
            Some(session) => session,
            None => self.connect().await?,
        };
        Ok(PooledSession {
            pool: self,
            session,
            _permit: permit,
        })
    }

    /// A new connection with every statement prepared on it.
    async fn connect(&self) -> Result<Session, StoreError> {
        let client = self.connect_client().await?;
        let sql = Prepared::on(&client, &self.table).await.map_err(backend)?;
        Ok(Session {
            client,
            sql,
            idle_since: Instant::now(),
        })
    }

    /// A new connection, its I/O driven by a task of its own.
    async fn connect_client(&self) -> Result<Client, StoreError> {
        let (client, connection) =
            tokio::time::timeout(Duration::from_secs(5), self.config.connect(NoTls))
                .await
                .map_err(|_| StoreError::Backend("no answer from PostgreSQL within 5s".into()))?
                .map_err(backend)?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(error = %err, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }

    fn put_back(&self, mut session: Session) {
        session.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push(session);
    }

    /// Closes the sessions idle for `max_idle_time` or more (dropping a
    /// client ends its connection).
    fn close_stale(&self) {
        let stale: Vec<Session> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let fresh_from = idle
                .iter()
                .position(|s| s.idle_since.elapsed() < self.max_idle_time)
                .unwrap_or(idle.len());
            idle.drain(..fresh_from).collect()
        };
        drop(stale);
    }

    /// Closes stale sessions as time passes, until the pool is gone.
    fn close_stale_in_background(pool: Weak<SessionPool>, every: Duration) {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match pool.upgrade() {
                    Some(pool) => pool.close_stale(),
                    None => return,
                }
            }
        });
    }
}

impl PooledSession<'_> {
    /// The call is over and nothing of it is left running: the session
    /// can serve the next one (and the permit goes with it).
    fn release(self) {
        self.pool.put_back(self.session);
    }
}

impl PostgresStore {
    /// Connects, creates the table and its index if needed, and keeps
    /// that first connection in the pool.
    pub async fn open(properties: &HashMap<String, String>) -> Result<Self, StoreError> {
        let connection_string = properties
            .get("connectionString")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| StoreError::Backend("metadata `connectionString` is required".into()))?;
        let mut config: tokio_postgres::Config = connection_string
            .parse()
            .map_err(|e| StoreError::Backend(format!("metadata `connectionString`: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("dapr-wasm");
        }
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
        let max_connections = max_connections(properties)?.min(Semaphore::MAX_PERMITS);
        let max_idle_time = max_idle_time(properties)?;
        let store = PostgresStore {
            sessions: Arc::new(SessionPool {
                config,
                table,
                idle: std::sync::Mutex::new(Vec::new()),
                max_idle_time,
                permits: Semaphore::new(max_connections),
            }),
        };
        store.create_table().await?;
        // (A session goes between max_idle_time and twice that.)
        SessionPool::close_stale_in_background(
            Arc::downgrade(&store.sessions),
            max_idle_time.min(Duration::from_secs(60)),
        );
        Ok(store)
    }

    /// The table and its index, if missing; on the first connection, which
    /// stays in the pool (the statements are prepared after the table
    /// exists).
    async fn create_table(&self) -> Result<(), StoreError> {
        let client = self.sessions.connect_client().await?;
        let table = &self.sessions.table;
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
        self.sessions.put_back(Session {
            client,
            sql,
            idle_since: Instant::now(),
        });
        Ok(())
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
        let lent = self.sessions.session().await?;
        let Session { client, sql, .. } = &lent.session;
        let row = client.query_opt(&sql.get, &[&key, &unix_millis()]).await;
        lent.release();
        let Some(row) = row.map_err(backend)? else {
            return Ok(None);
        };
        // A table made by something else may hold other types.
        Ok(Some(StateItem {
            value: row.try_get(0).map_err(backend)?,
            etag: row.try_get::<_, i64>(1).map_err(backend)?.to_string(),
            expires_ms: row.try_get(2).map_err(backend)?,
        }))
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StoreError> {
        let mut lent = self.sessions.session().await?;
        let Session { client, sql, .. } = &mut lent.session;
        let outcome = async {
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
            // Dropping `tx` on an early return above queues its rollback
            // ahead of the connection's next statement.
            tx.commit().await.map_err(backend)
        }
        .await;
        lent.release();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bad `maxConns` is refused before anything connects.
    #[tokio::test]
    async fn max_conns_that_is_not_a_number_is_a_clear_error() {
        let properties = HashMap::from([
            ("connectionString".to_string(), "host=127.0.0.1".to_string()),
            ("maxConns".to_string(), "lots".to_string()),
        ]);
        let Err(err) = PostgresStore::open(&properties).await else {
            panic!("opened with maxConns `lots`");
        };
        assert_eq!(err.to_string(), "maxConns `lots` is not a whole number");
    }
}
