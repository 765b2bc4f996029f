//! State stores: one [`StateStore`] trait, one module per backend, and one
//! [`open`] that picks the backend by its Dapr type name.
//!
//! | Dapr type | module | metadata |
//! |---|---|---|
//! | `state.sqlite` | [`sqlite`] | `connectionString` (a file path), `tableName`, `busyTimeout` |
//! | `state.in-memory` | [`sqlite`], in memory | none |
//! | `state.redis` | [`redis`] | `redisHost`, `redisPassword`, `redisUsername`, `redisDB`, `dialTimeout`, `readTimeout` |
//! | `state.postgresql` | [`postgres`] | `connectionString`, `tableName`, `maxConns`, `connectionMaxIdleTime` |
//! | `state.mysql` | [`mysql`] | `connectionString`, `schemaName`, `tableName`, `maxConns`, `connectionMaxIdleTime` |
//!
//! Every store also takes Dapr's `timeout`: how long one call may take
//! ([`DEFAULT_STORE_TIMEOUT`] unless set; see [`TimeLimited`]).
//!
//! A new backend is one module plus one line in [`open`].
//!
//! # Semantics (Dapr's)
//!
//! - Values are the JSON the client sent, stored as bytes and returned as is.
//! - ETags are decimal version numbers issued by the store; any other text
//!   is [`StoreError::EtagInvalid`] (400).
//! - `last-write` (the default): a given etag must match; without one the
//!   write always succeeds. `first-write`: a given etag must match; without
//!   one the key must not exist yet. A mismatch is
//!   [`StoreError::EtagMismatch`] (409).
//! - `ttlInSeconds` makes a key expire; expired keys read as missing.
//! - Transactions apply all their operations or none.

pub mod api;
pub mod mysql;
pub(crate) mod ops;
pub mod postgres;
pub mod redis;
pub mod sqlite;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::components::Component;

/// A value read from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateItem {
    /// The JSON value as sent by the client.
    pub value: Vec<u8>,
    /// The current etag.
    pub etag: String,
    /// When it expires (Unix milliseconds), if it was saved with a TTL.
    pub expires_ms: Option<i64>,
}

impl StateItem {
    /// The metadata daprd reads with an item: `ttlExpireTime` (RFC 3339,
    /// UTC, to the second) for one saved with a TTL, nothing otherwise.
    /// The HTTP API sends each as a `metadata.<name>` header (a bulk read
    /// as `metadata`), the gRPC API in the answer's `metadata`.
    pub fn metadata(&self) -> HashMap<String, String> {
        self.expires_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|at| {
                let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                HashMap::from([("ttlExpireTime".to_string(), at)])
            })
            .unwrap_or_default()
    }
}

/// Dapr's concurrency modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Concurrency {
    /// Writes without an etag win.
    #[default]
    LastWrite,
    /// Writes without an etag succeed only for a new key.
    FirstWrite,
}

/// One write.
#[derive(Debug, Clone)]
pub struct SetRequest {
    /// The key: as the client named it in [`ops`], `<appId>||<key>` once it
    /// reaches a store.
    pub key: String,
    /// The JSON value.
    pub value: Vec<u8>,
    /// The etag the client expects, if any.
    pub etag: Option<String>,
    /// Concurrency mode.
    pub concurrency: Concurrency,
    /// Expiry in seconds, if any.
    pub ttl_seconds: Option<u64>,
}

/// One delete.
#[derive(Debug, Clone)]
pub struct DeleteRequest {
    /// The key (as in [`SetRequest::key`]).
    pub key: String,
    /// The etag the client expects, if any.
    pub etag: Option<String>,
    /// Concurrency mode.
    pub concurrency: Concurrency,
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum Operation {
    /// Insert or update.
    Upsert(SetRequest),
    /// Delete.
    Delete(DeleteRequest),
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The etag did not match, or first-write found an existing key.
    #[error("{0}")]
    EtagMismatch(String),
    /// The etag is not one this store issues.
    #[error("{0}")]
    EtagInvalid(String),
    /// The backend failed.
    #[error("{0}")]
    Backend(String),
}

/// What every backend implements.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
    /// Reads one key; `None` if missing or expired.
    async fn get(&self, key: &str) -> Result<Option<StateItem>, StoreError>;
    /// Writes one key (by default, as a transaction of one).
    async fn set(&self, request: SetRequest) -> Result<(), StoreError> {
        self.transact(vec![Operation::Upsert(request)]).await
    }
    /// Deletes one key (deleting a missing key without an etag succeeds;
    /// by default, as a transaction of one).
    async fn delete(&self, request: DeleteRequest) -> Result<(), StoreError> {
        self.transact(vec![Operation::Delete(request)]).await
    }
    /// Applies all operations or none.
    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StoreError>;
}

impl SetRequest {
    /// When the key expires, in Unix milliseconds, if it has a TTL.
    pub fn expires_at_millis(&self, now: i64) -> Option<i64> {
        self.ttl_seconds.map(|ttl| {
            now.saturating_add(i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX))
        })
    }
}

/// How long one call to a store may take before the caller gets an error
/// (a store that stopped answering must not hang the API), unless its
/// component sets `timeout`: Dapr's default for its SQL stores.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(20);

/// A duration in a component's metadata, as Dapr's SQL stores read one: a
/// Go duration (`500ms`, `10s`, `1m30s`) or a number of seconds; `None` if unset.
/// (Pub/sub's `metadata_duration` and Redis's read a bare number as
/// milliseconds, as Dapr does there.)
pub(crate) fn duration_or_seconds(
    properties: &HashMap<String, String>,
    name: &str,
) -> Result<Option<Duration>, String> {
    properties
        .get(name)
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(|text| {
            service_kit::units::parse_duration(text).map_err(|e| format!("metadata `{name}`: {e}"))
        })
        .transpose()
}

/// A component's `timeout` metadata, more than zero.
fn store_timeout(properties: &HashMap<String, String>) -> Result<Duration, String> {
    match duration_or_seconds(properties, "timeout")? {
        None => Ok(DEFAULT_STORE_TIMEOUT),
        Some(limit) if limit.is_zero() => Err("metadata `timeout` must be more than 0".into()),
        Some(limit) => Ok(limit),
    }
}

/// A store whose every call fails once it has taken `limit`.
struct TimeLimited {
    store: Box<dyn StateStore>,
    limit: Duration,
}

impl TimeLimited {
    async fn within<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.limit;
        tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(StoreError::Backend(format!(
                "the store did not answer within {limit:?}"
            )))
        })
    }
}

#[async_trait::async_trait]
impl StateStore for TimeLimited {
    async fn get(&self, key: &str) -> Result<Option<StateItem>, StoreError> {
        self.within(self.store.get(key)).await
    }
    async fn set(&self, request: SetRequest) -> Result<(), StoreError> {
        self.within(self.store.set(request)).await
    }
    async fn delete(&self, request: DeleteRequest) -> Result<(), StoreError> {
        self.within(self.store.delete(request)).await
    }
    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StoreError> {
        self.within(self.store.transact(operations)).await
    }
}

/// A fresh etag for the SQL stores: a random positive 63-bit number, so an
/// etag of a deleted and re-created key never matches.
pub(crate) fn new_etag() -> i64 {
    crate::ids::new_positive_i63()
}

/// Parses an etag issued by a store (a decimal version number).
pub fn parse_etag(etag: &str) -> Result<i64, StoreError> {
    etag.trim_matches('"').parse::<i64>().map_err(|_| {
        StoreError::EtagInvalid(format!("`{etag}` is not an etag issued by this store"))
    })
}

/// The default `connectionMaxIdleTime` of the SQL stores: pgx's, which
/// daprd uses when the component sets none.
pub(crate) const DEFAULT_MAX_IDLE_TIME: Duration = Duration::from_secs(30 * 60);

/// A SQL store's `connectionMaxIdleTime`: a duration or a number of
/// seconds; unset or 0 is [`DEFAULT_MAX_IDLE_TIME`].
pub(crate) fn max_idle_time(properties: &HashMap<String, String>) -> Result<Duration, StoreError> {
    let limit =
        duration_or_seconds(properties, "connectionMaxIdleTime").map_err(StoreError::Backend)?;
    Ok(limit
        .filter(|limit| !limit.is_zero())
        .unwrap_or(DEFAULT_MAX_IDLE_TIME))
}

/// A SQL store's `maxConns`: its pool's size; unset, 0 or less is Dapr's
/// default, 4 or the number of CPUs, whichever is more.
pub(crate) fn max_connections(properties: &HashMap<String, String>) -> Result<usize, StoreError> {
    let default = || {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .max(4)
    };
    match properties.get("maxConns").filter(|m| !m.is_empty()) {
        None => Ok(default()),
        Some(max) => match max.trim().parse::<i64>() {
            Ok(n) if n > 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            Ok(_) => Ok(default()),
            Err(_) => Err(StoreError::Backend(format!(
                "maxConns `{max}` is not a whole number"
            ))),
        },
    }
}

/// Why a state component could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("state store `{name}` ({component_type}): {reason}")]
pub struct OpenError {
    name: String,
    component_type: String,
    reason: String,
}

/// Opens the backend a component describes, each call bounded by its
/// `timeout`. `data_dir` resolves relative SQLite paths.
pub async fn open(
    component: &Component,
    data_dir: &Path,
) -> Result<Box<dyn StateStore>, OpenError> {
    let error = |reason: String| OpenError {
        name: component.metadata.name.clone(),
        component_type: component.spec.component_type.clone(),
        reason,
    };
    let properties: HashMap<String, String> = component.properties();
    let limit = store_timeout(&properties).map_err(error)?;
    let store: Result<Box<dyn StateStore>, StoreError> = match component
        .spec
        .component_type
        .as_str()
    {
        "state.sqlite" => {
            let config =
                sqlite::SqliteConfig::from_properties(&properties, data_dir).map_err(error)?;
            sqlite::SqliteStore::open(&config).map(|s| Box::new(s) as Box<dyn StateStore>)
        }
        // Dapr's in-memory store: a private SQLite database in memory, so
        // its semantics are `state.sqlite`'s to the letter.
        "state.in-memory" => sqlite::SqliteStore::open(&sqlite::SqliteConfig {
            path: ":memory:".into(),
            table: "state".into(),
            busy_timeout: sqlite::DEFAULT_BUSY_TIMEOUT,
        })
        .map(|s| Box::new(s) as Box<dyn StateStore>),
        "state.redis" => redis::RedisStore::open(&properties)
            .await
            .map(|s| Box::new(s) as Box<dyn StateStore>),
        "state.postgresql" => postgres::PostgresStore::open(&properties)
            .await
            .map(|s| Box::new(s) as Box<dyn StateStore>),
        "state.mysql" => mysql::MysqlStore::open(&properties)
            .await
            .map(|s| Box::new(s) as Box<dyn StateStore>),
        other => {
            return Err(error(format!(
                "unsupported type `{other}`; supported: state.sqlite, state.in-memory, state.redis, state.postgresql, state.mysql"
            )));
        }
    };
    store
        .map(|store| Box::new(TimeLimited { store, limit }) as Box<dyn StateStore>)
        .map_err(|e| error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_max_idle_time_as_dapr_reads_it() {
        let of = |value: &str| {
            max_idle_time(&HashMap::from([(
                "connectionMaxIdleTime".to_string(),
                value.to_string(),
            )]))
        };
        assert_eq!(
            max_idle_time(&HashMap::new()).unwrap(),
            DEFAULT_MAX_IDLE_TIME
        );
        assert_eq!(of("0").unwrap(), DEFAULT_MAX_IDLE_TIME);
        assert_eq!(of("90").unwrap(), Duration::from_secs(90));
        assert_eq!(of("5m").unwrap(), Duration::from_secs(300));
        let err = of("a while").unwrap_err().to_string();
        assert!(
            err.starts_with("metadata `connectionMaxIdleTime`: "),
            "{err}"
        );
    }

    /// A store that never answers.
    struct Silent;

    #[async_trait::async_trait]
    impl StateStore for Silent {
        async fn get(&self, _: &str) -> Result<Option<StateItem>, StoreError> {
            std::future::pending().await
        }
        async fn set(&self, _: SetRequest) -> Result<(), StoreError> {
            std::future::pending().await
        }
        async fn delete(&self, _: DeleteRequest) -> Result<(), StoreError> {
            std::future::pending().await
        }
        async fn transact(&self, _: Vec<Operation>) -> Result<(), StoreError> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_never_answers_fails_after_the_timeout() {
        let limit = Duration::from_millis(1500);
        let store = TimeLimited {
            store: Box::new(Silent),
            limit,
        };
        let started = tokio::time::Instant::now();
        let err = store.get("key").await.unwrap_err();
        assert_eq!(started.elapsed(), limit);
        assert!(
            err.to_string().contains("did not answer within 1.5s"),
            "{err}"
        );
        assert!(store.transact(Vec::new()).await.is_err());
    }

    #[test]
    fn timeout_metadata_as_dapr_reads_it() {
        let timeout = |value: &str| {
            store_timeout(&HashMap::from([("timeout".to_string(), value.to_string())]))
        };
        assert_eq!(store_timeout(&HashMap::new()), Ok(DEFAULT_STORE_TIMEOUT));
        assert_eq!(timeout(""), Ok(DEFAULT_STORE_TIMEOUT));
        assert_eq!(timeout("30"), Ok(Duration::from_secs(30)));
        assert_eq!(timeout("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(timeout("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(timeout("1m"), Ok(Duration::from_secs(60)));
        let zero = timeout("0").unwrap_err();
        assert!(zero.contains("must be more than 0"), "{zero}");
        let garbage = timeout("soon").unwrap_err();
        assert!(garbage.starts_with("metadata `timeout`: "), "{garbage}");
    }
}
