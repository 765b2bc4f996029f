//! Where the events are kept: one [`EventStore`] trait, one module per
//! database, and one [`open`] that picks it by the URL's scheme.
//!
//! | URL | module |
//! |---|---|
//! | `sqlite:PATH` | [`sqlite`] |
//! | `postgres://…`, `postgresql://…` | [`postgres`] |
//! | `mysql://…`, `mariadb://…` | [`mysql`] |
//!
//! Every database has one table, `image_events`, keyed by the CloudEvent
//! id: storing an event twice stores it once.

pub mod mysql;
pub mod postgres;
pub mod sqlite;

use std::time::Duration;

use serde::Serialize;

use crate::ImageEvent;
use crate::config::{DatabaseSource, EventsConfig};

/// Why the database failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("{0}")]
    Database(String),
    /// The database URL is not usable.
    #[error("database URL: {0}")]
    Url(String),
}

/// A stored event and its CloudEvent id.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoredEvent {
    /// The CloudEvent id.
    pub id: String,
    /// The event.
    #[serde(flatten)]
    pub event: ImageEvent,
}

/// Events counted per API and status.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Count {
    /// `grayscale` or `classify`.
    pub api: String,
    /// The status the browser got.
    pub status: u16,
    /// How many.
    pub count: u64,
}

/// A database of image events.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync {
    /// The database kind, for logs.
    fn kind(&self) -> &'static str;
    /// Stores `event` under `id`; `false` when it was already there.
    async fn insert(&self, id: &str, event: &ImageEvent) -> Result<bool, StoreError>;
    /// `limit` events from `offset`, newest first, and how many there are.
    async fn page(&self, limit: u32, offset: u32) -> Result<(Vec<StoredEvent>, u64), StoreError>;
    /// Counts per API and status.
    async fn summary(&self) -> Result<Vec<Count>, StoreError>;
}

/// Opens the configured database, reading its URL from the secret store
/// first when so configured.
pub async fn open(config: &EventsConfig) -> anyhow::Result<Box<dyn EventStore>> {
    let url = match &config.database {
        DatabaseSource::Url(url) => url.clone(),
        DatabaseSource::Secret { store, key } => {
            read_secret(config.dapr_http_port, store, key).await?
        }
    };
    Ok(open_url(&url).await?)
}

/// Opens the database at `url`.
pub async fn open_url(url: &str) -> Result<Box<dyn EventStore>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        return Ok(Box::new(sqlite::SqliteEvents::open(
            path.trim_start_matches("//"),
        )?));
    }
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => Ok(Box::new(postgres::PostgresEvents::open(url).await?)),
        Some("mysql" | "mariadb") => Ok(Box::new(mysql::MysqlEvents::open(url).await?)),
        _ => Err(StoreError::Url(
            "use sqlite:PATH, postgres://… or mysql://…".into(),
        )),
    }
}

/// The secret `key` of `store` through the sidecar (`GET
/// /v1.0/secrets/{store}/{key}`), waiting up to 30 s for the sidecar to
/// answer (it starts beside this app).
async fn read_secret(dapr_http_port: u16, store: &str, key: &str) -> anyhow::Result<String> {
    let url = format!("http://127.0.0.1:{dapr_http_port}/v1.0/secrets/{store}/{key}");
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match client.get(&url).send().await {
            Ok(response) if response.status().is_success() => {
                let secret: std::collections::HashMap<String, String> = response.json().await?;
                return secret
                    .get(key)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("secret {store}/{key} has no value {key}"));
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                anyhow::bail!(
                    "cannot read the database URL from secret {store}/{key}: {status} {body}"
                );
            }
            Err(err) if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("the Dapr sidecar on port {dapr_http_port} does not answer: {err}");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
