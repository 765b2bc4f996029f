//! `state.sqlite`: the embedded default store, one SQLite file.
//!
//! Table `<tableName>(key TEXT PRIMARY KEY, value BLOB, etag INTEGER,
//! expires_ms INTEGER NULL)`. Each write gets a fresh random etag, so an etag
//! from a deleted and re-created key never matches. Every call runs on
//! tokio's blocking pool; WAL mode and a busy timeout (Dapr's
//! `busyTimeout`) let other processes share the file. Writes are acknowledged only after SQLite commits them.
//! The statements of a get, a set, a delete and the purge of expired rows
//! are written once per store ([`Statements`]) and prepared once per
//! connection (rusqlite's statement cache), not parsed on every call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Concurrency, DeleteRequest, Operation, SetRequest, StateItem, StateStore, StoreError, new_etag,
    parse_etag,
};
use crate::unix_millis;

/// Where and how to store.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The database file (`:memory:` for a private in-memory store).
    pub path: PathBuf,
    /// The table's name (letters, digits and `_`).
    pub table: String,
    /// How long a call waits for another connection's lock on the file
    /// (another sidecar's write) before it fails with "database is locked".
    pub busy_timeout: Duration,
}

/// Dapr's default `busyTimeout`.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

impl SqliteConfig {
    /// Reads Dapr's `connectionString`, `tableName` and `busyTimeout` (a Go
    /// duration or a number of seconds; 2 s unless set, as in daprd). A
    /// relative path is relative to the working directory, as in daprd;
    /// without a `connectionString` the store is `<data_dir>/state.db`.
    pub fn from_properties(
        properties: &HashMap<String, String>,
        data_dir: &Path,
    ) -> Result<Self, String> {
        let path = match properties.get("connectionString").map(|s| s.trim()) {
            Some(text) if !text.is_empty() => {
                let without_scheme = text.strip_prefix("file:").unwrap_or(text);
                let path = without_scheme.split('?').next().unwrap_or(without_scheme);
                PathBuf::from(path)
            }
            _ => data_dir.join("state.db"),
        };
        Ok(SqliteConfig {
            path,
            table: properties
                .get("tableName")
                .filter(|t| !t.is_empty())
                .cloned()
                .unwrap_or_else(|| "state".into()),
            busy_timeout: super::duration_or_seconds(properties, "busyTimeout")?
                .unwrap_or(DEFAULT_BUSY_TIMEOUT),
        })
    }
}

/// A SQLite-backed [`StateStore`].
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
    statements: Arc<Statements>,
}

/// The SQL of every call, for one table: written once, so that the
/// statement cache finds each by its text without a `format!` per call.
struct Statements {
    get: String,
    etag: String,
    upsert: String,
    delete: String,
    purge: String,
}

impl Statements {
    fn for_table(table: &str) -> Self {
        let live = "(expires_ms IS NULL OR expires_ms > ?2)";
        Statements {
            get: format!("SELECT value, etag, expires_ms FROM {table} WHERE key = ?1 AND {live}"),
            etag: format!("SELECT etag FROM {table} WHERE key = ?1 AND {live}"),
            upsert: format!(
                "INSERT INTO {table} (key, value, etag, expires_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET value = ?2, etag = ?3, expires_ms = ?4"
            ),
            delete: format!("DELETE FROM {table} WHERE key = ?1"),
            purge: format!("DELETE FROM {table} WHERE expires_ms IS NOT NULL AND expires_ms <= ?1"),
        }
    }
}

fn backend(err: rusqlite::Error) -> StoreError {
    StoreError::Backend(err.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database and its table.
    pub fn open(config: &SqliteConfig) -> Result<Self, StoreError> {
        let valid_table = !config.table.is_empty()
            && config
                .table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_table {
            return Err(StoreError::Backend(format!(
                "tableName `{}` must be letters, digits or `_`",
                config.table
            )));
        }
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let table = &config.table;
        let connection = crate::sqlite_file::open_shared(
            &config.path,
            &format!(
                "PRAGMA journal_mode=WAL;
                 PRAGMA synchronous=FULL;
                 CREATE TABLE IF NOT EXISTS {table} (
                     key        TEXT PRIMARY KEY NOT NULL,
                     value      BLOB NOT NULL,
                     etag       INTEGER NOT NULL,
                     expires_ms INTEGER
                 );
                 CREATE INDEX IF NOT EXISTS {table}_expires ON {table} (expires_ms)
                     WHERE expires_ms IS NOT NULL;"
            ),
            config.busy_timeout,
        )
        .map_err(backend)?;
        Ok(SqliteStore {
            connection: Arc::new(Mutex::new(connection)),
            statements: Arc::new(Statements::for_table(table)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Statements) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        let statements = self.statements.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut connection, &statements)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }
}

/// The live etag of `key`, ignoring an expired row.
fn current_etag(c: &Connection, sql: &Statements, key: &str) -> Result<Option<i64>, StoreError> {
    c.prepare_cached(&sql.etag)
        .map_err(backend)?
        .query_row(params![key, unix_millis()], |row| row.get(0))
        .optional()
        .map_err(backend)
}

/// Checks the caller's etag (or first-write rule) against the stored one.
fn check_etag(
    current: Option<i64>,
    etag: Option<&str>,
    concurrency: Concurrency,
    key: &str,
) -> Result<(), StoreError> {
    match (etag.filter(|e| !e.is_empty()), concurrency) {
        (Some(etag), _) => {
            let expected = parse_etag(etag)?;
            if current != Some(expected) {
                return Err(StoreError::EtagMismatch(format!(
                    "etag `{etag}` does not match the current version of key {key}"
                )));
            }
        }
        (None, Concurrency::FirstWrite) if current.is_some() => {
            return Err(StoreError::EtagMismatch(format!(
                "first-write: key {key} already exists and no etag was given"
            )));
        }
        (None, _) => {}
    }
    Ok(())
}

/// Checks `etag` (under `concurrency`) against the stored one of `key`.
fn check_stored_etag(
    c: &Connection,
    sql: &Statements,
    key: &str,
    etag: Option<&str>,
    concurrency: Concurrency,
) -> Result<(), StoreError> {
    check_etag(current_etag(c, sql, key)?, etag, concurrency, key)
}

fn apply_set(c: &Connection, sql: &Statements, request: &SetRequest) -> Result<(), StoreError> {
    check_stored_etag(
        c,
        sql,
        &request.key,
        request.etag.as_deref(),
        request.concurrency,
    )?;
    let expires = request.expires_at_millis(unix_millis());
    c.prepare_cached(&sql.upsert)
        .map_err(backend)?
        .execute(params![request.key, request.value, new_etag(), expires])
        .map_err(backend)?;
    Ok(())
}

fn apply_delete(
    c: &Connection,
    sql: &Statements,
    request: &DeleteRequest,
) -> Result<(), StoreError> {
    if request.etag.as_deref().is_some_and(|e| !e.is_empty()) {
        check_stored_etag(
            c,
            sql,
            &request.key,
            request.etag.as_deref(),
            request.concurrency,
        )?;
    }
    c.prepare_cached(&sql.delete)
        .map_err(backend)?
        .execute(params![request.key])
        .map_err(backend)?;
    Ok(())
}

fn purge_expired(c: &Connection, sql: &Statements) -> Result<(), StoreError> {
    c.prepare_cached(&sql.purge)
        .map_err(backend)?
        .execute(params![unix_millis()])
        .map_err(backend)?;
    Ok(())
}

#[async_trait::async_trait]
impl StateStore for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<StateItem>, StoreError> {
        let key = key.to_string();
        self.run(move |c, sql| {
            c.prepare_cached(&sql.get)
                .map_err(backend)?
                .query_row(params![key, unix_millis()], |row| {
                    Ok(StateItem {
                        value: row.get(0)?,
                        etag: row.get::<_, i64>(1)?.to_string(),
                        expires_ms: row.get(2)?,
                    })
                })
                .optional()
                .map_err(backend)
        })
        .await
    }

    async fn set(&self, request: SetRequest) -> Result<(), StoreError> {
        self.transact(vec![Operation::Upsert(request)]).await
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), StoreError> {
        self.transact(vec![Operation::Delete(request)]).await
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StoreError> {
        self.run(move |c, sql| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            for operation in &operations {
                match operation {
                    Operation::Upsert(request) => apply_set(&tx, sql, request)?,
                    Operation::Delete(request) => apply_delete(&tx, sql, request)?,
                }
            }
            purge_expired(&tx, sql)?;
            // Dropping `tx` on an early return above rolls everything back.
            tx.commit().map_err(backend)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<SqliteConfig, String> {
        let properties = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SqliteConfig::from_properties(&properties, Path::new("/data"))
    }

    #[test]
    fn busy_timeout_is_daprs_unless_set_and_a_bad_one_is_refused() {
        let unset = config(&[]).unwrap();
        assert_eq!(unset.busy_timeout, DEFAULT_BUSY_TIMEOUT);
        assert_eq!(unset.path, Path::new("/data/state.db"));
        let set = config(&[("busyTimeout", "250ms")]).unwrap();
        assert_eq!(set.busy_timeout, Duration::from_millis(250));
        let error = config(&[("busyTimeout", "a while")]).unwrap_err();
        assert!(error.contains("busyTimeout"), "{error}");
    }
}
