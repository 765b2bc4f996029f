//! Name resolution on one machine: a SQLite registry of `app-id → address`
//! shared by every sidecar (like Dapr's SQLite name resolver).
//!
//! Each sidecar [`Registry::register`]s its app id with the [`Endpoints`]
//! of its APIs (HTTP for invocation, gRPC for proxied gRPC calls), refreshes the row every heartbeat, and deletes it on clean
//! shutdown. A sidecar that dies stops refreshing; [`Registry::lookup`]
//! ignores rows older than the TTL, and every heartbeat deletes them.
//!
//! The database uses WAL mode and a busy timeout, so many sidecars (separate
//! processes) can read and write it at once. Invocations resolve through
//! [`Registry::lookup_cached`], which remembers an answer for
//! [`LOOKUP_CACHE_FOR`]; a caller that cannot connect [`Registry::forget`]s
//! it, so a restarted sidecar is found again at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

/// How often a sidecar refreshes its row.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a row stays valid without a refresh.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// How long [`Registry::lookup_cached`] reuses an answer.
pub const LOOKUP_CACHE_FOR: Duration = Duration::from_secs(1);

/// Where a sidecar serves: its HTTP API, and its gRPC API (absent in rows
/// written by sidecars older than the gRPC API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// The HTTP API: service invocation between sidecars.
    pub http: SocketAddr,
    /// The gRPC API: proxied gRPC calls between sidecars.
    pub grpc: Option<SocketAddr>,
}

impl Endpoints {
    /// A sidecar serving HTTP only.
    pub fn http(http: SocketAddr) -> Endpoints {
        Endpoints { http, grpc: None }
    }
}

/// Where the registry reads the time, in Unix milliseconds: the system
/// clock, or a test's own ([`Registry::with_clock`]).
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// A handle on the shared registry.
#[derive(Clone)]
pub struct Registry {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
    ttl: Duration,
    clock: Clock,
    recent: Arc<Mutex<HashMap<String, (Endpoints, Instant)>>>,
}

/// Why the registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// SQLite refused or failed.
    #[error("name registry {path}: {source}")]
    Sqlite {
        /// The registry's file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The blocking task that ran the query did not finish.
    #[error("name registry lookup interrupted: {0}")]
    Interrupted(String),
}

impl Registry {
    /// Opens (creating if needed) the registry at `path`.
    pub fn open(path: &Path, ttl: Duration) -> Result<Self, RegistryError> {
        let error = |source| RegistryError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let connection = crate::sqlite_file::open_shared(
            path,
            "PRAGMA journal_mode=WAL;
                 CREATE TABLE IF NOT EXISTS hosts (
                     app_id     TEXT    NOT NULL,
                     address    TEXT    NOT NULL,
                     pid        INTEGER NOT NULL,
                     updated_ms INTEGER NOT NULL,
                     PRIMARY KEY (app_id, address)
                 );",
            crate::sqlite_file::BUSY_TIMEOUT,
        )
        .map_err(error)?;
        // The actor types each sidecar's app hosts (placement, on one
        // machine: [`Registry::actor_hosts`]).
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS actor_types (
                     app_id     TEXT NOT NULL,
                     address    TEXT NOT NULL,
                     actor_type TEXT NOT NULL,
                     PRIMARY KEY (app_id, address, actor_type)
                 );",
            )
            .map_err(error)?;
        // Registries created before the gRPC API lack its column.
        match connection.execute("ALTER TABLE hosts ADD COLUMN grpc_address TEXT", []) {
            Ok(_) => {}
            Err(e) if e.to_string().contains("duplicate column") => {}
            Err(e) => return Err(error(e)),
        }
        Ok(Registry {
            connection: Arc::new(Mutex::new(connection)),
            path: path.to_path_buf(),
            ttl,
            clock: Arc::new(crate::unix_millis),
            recent: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// This handle with another clock (Unix milliseconds), so that tests
    /// can move time instead of waiting for it.
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, RegistryError> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&connection).map_err(|source| RegistryError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Registers (or refreshes) `app_id` at `endpoints`, and deletes rows
    /// whose TTL has passed.
    pub fn register(&self, app_id: &str, endpoints: Endpoints) -> Result<(), RegistryError> {
        let now = (self.clock)();
        let stale_before = now - self.ttl_millis();
        let grpc = endpoints.grpc.map(|a| a.to_string());
        self.with(|c| {
            c.execute(
                "INSERT INTO hosts (app_id, address, grpc_address, pid, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (app_id, address)
                 DO UPDATE SET grpc_address = ?3, pid = ?4, updated_ms = ?5",
                params![
                    app_id,
                    endpoints.http.to_string(),
                    grpc,
                    std::process::id(),
                    now
                ],
            )?;
            c.execute(
                "DELETE FROM hosts WHERE updated_ms < ?1",
                params![stale_before],
            )?;
            Ok(())
        })
    }

    /// Removes `app_id` at `endpoints` (on clean shutdown), with the actor
    /// types it hosted.
    pub fn deregister(&self, app_id: &str, endpoints: Endpoints) -> Result<(), RegistryError> {
        self.with(|c| {
            let address = endpoints.http.to_string();
            c.execute(
                "DELETE FROM actor_types WHERE app_id = ?1 AND address = ?2",
                params![app_id, address],
            )?;
            c.execute(
                "DELETE FROM hosts WHERE app_id = ?1 AND address = ?2",
                params![app_id, address],
            )
            .map(drop)
        })
    }

    /// Records that `app_id`'s sidecar at `endpoints` hosts `actor_types`
    /// (replacing what it hosted before). They count as long as its row in
    /// the registry is fresh.
    pub fn set_actor_types(
        &self,
        app_id: &str,
        endpoints: Endpoints,
        actor_types: &[String],
    ) -> Result<(), RegistryError> {
        let address = endpoints.http.to_string();
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "DELETE FROM actor_types WHERE app_id = ?1 AND address = ?2",
                params![app_id, address],
            )?;
            for actor_type in actor_types {
                tx.execute(
                    "INSERT OR IGNORE INTO actor_types (app_id, address, actor_type)
                     VALUES (?1, ?2, ?3)",
                    params![app_id, address, actor_type],
                )?;
            }
            tx.commit()
        })
    }

    /// The HTTP addresses of the live sidecars whose apps host
    /// `actor_type`, in address order.
    pub fn actor_hosts(&self, actor_type: &str) -> Result<Vec<SocketAddr>, RegistryError> {
        let fresh_after = (self.clock)() - self.ttl_millis();
        let addresses: Vec<String> = self.with(|c| {
            c.prepare_cached(
                "SELECT DISTINCT a.address FROM actor_types a
                 JOIN hosts h ON h.app_id = a.app_id AND h.address = a.address
                 WHERE a.actor_type = ?1 AND h.updated_ms >= ?2
                 ORDER BY a.address",
            )?
            .query_map(params![actor_type, fresh_after], |row| row.get(0))?
            .collect()
        })?;
        Ok(addresses.iter().filter_map(|a| a.parse().ok()).collect())
    }

    /// The freshest live endpoints of `app_id`, if any.
    pub fn lookup(&self, app_id: &str) -> Result<Option<Endpoints>, RegistryError> {
        let fresh_after = (self.clock)() - self.ttl_millis();
        let row: Option<(String, Option<String>)> = self.with(|c| {
            c.prepare_cached(
                "SELECT address, grpc_address FROM hosts WHERE app_id = ?1 AND updated_ms >= ?2
                 ORDER BY updated_ms DESC LIMIT 1",
            )?
            .query_row(params![app_id, fresh_after], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
        })?;
        Ok(row.and_then(|(http, grpc)| {
            Some(Endpoints {
                http: http.parse().ok()?,
                grpc: grpc.and_then(|a| a.parse().ok()),
            })
        }))
    }

    /// [`Registry::lookup`], reusing an answer younger than
    /// [`LOOKUP_CACHE_FOR`]. A miss queries SQLite on tokio's blocking pool
    /// (it can wait up to the busy timeout), never on the caller's runtime.
    pub async fn lookup_cached(&self, app_id: &str) -> Result<Option<Endpoints>, RegistryError> {
        if let Some(address) = self.cached(app_id) {
            return Ok(Some(address));
        }
        let registry = self.clone();
        let id = app_id.to_string();
        let found = tokio::task::spawn_blocking(move || registry.lookup(&id))
            .await
            .map_err(|join| RegistryError::Interrupted(join.to_string()))??;
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        match found {
            Some(endpoints) => recent.insert(app_id.to_string(), (endpoints, Instant::now())),
            None => recent.remove(app_id),
        };
        Ok(found)
    }

    /// The cached answer for `app_id`, if younger than [`LOOKUP_CACHE_FOR`].
    fn cached(&self, app_id: &str) -> Option<Endpoints> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .get(app_id)
            .filter(|(_, at)| at.elapsed() < LOOKUP_CACHE_FOR)
            .map(|(endpoints, _)| *endpoints)
    }

    /// Drops a cached answer (after a failed connection to it).
    pub fn forget(&self, app_id: &str) {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app_id);
    }

    /// Every live registration, as `(app_id, address, pid)`.
    pub fn list(&self) -> Result<Vec<(String, String, u32)>, RegistryError> {
        let fresh_after = (self.clock)() - self.ttl_millis();
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT app_id, address, pid FROM hosts WHERE updated_ms >= ?1 ORDER BY app_id",
            )?;
            let rows = statement.query_map(params![fresh_after], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
            rows.collect()
        })
    }

    fn ttl_millis(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// Registers now and then refreshes every `heartbeat` until `stop`
    /// fires (or its sender is dropped). A refresh in progress always
    /// finishes first, so once this returns no late refresh can re-insert
    /// the row after a deregistration. Failures are logged and retried.
    pub async fn heartbeat(
        self,
        app_id: String,
        endpoints: Endpoints,
        heartbeat: Duration,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        let mut ticker = tokio::time::interval(heartbeat);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = ticker.tick() => {}
            }
            let registry = self.clone();
            let id = app_id.clone();
            let result =
                tokio::task::spawn_blocking(move || registry.register(&id, endpoints)).await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "name registry heartbeat failed"),
                Err(err) => tracing::warn!(error = %err, "name registry heartbeat panicked"),
            }
        }
    }
}
