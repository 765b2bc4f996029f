//! The `dapr-wasm events` command line: flags and the env vars Dapr sets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

/// Flags of `dapr-wasm events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// The port this app listens on (Dapr's app port).
    #[arg(long, env = "APP_PORT", default_value_t = 9005)]
    pub app_port: u16,

    /// The address to bind. Loopback by default.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// The sidecar's HTTP port, set by Dapr (for the secret store).
    #[arg(long, env = "DAPR_HTTP_PORT", default_value_t = 3500)]
    pub dapr_http_port: u16,

    /// The Dapr pub/sub component the events come through.
    #[arg(long, env = "PUBSUB_NAME", default_value = "pubsub")]
    pub pubsub: String,

    /// The topic of the image events.
    #[arg(long, env = "EVENTS_TOPIC", default_value = "image-events")]
    pub topic: String,

    /// The database: `sqlite:PATH`, `postgres://…` or `mysql://…`
    /// [default: sqlite:events.db in the data directory].
    #[arg(long, env = "EVENTS_DATABASE_URL", conflicts_with = "database_secret")]
    pub database_url: Option<String>,

    /// Read the database URL from a Dapr secret store, as `STORE/KEY`.
    #[arg(long, env = "EVENTS_DATABASE_SECRET")]
    pub database_secret: Option<String>,

    /// The metrics port (`--metrics-port`).
    #[command(flatten)]
    pub metrics: service_kit::metrics::MetricsArgs,

    /// The connection limit (`--max-connections`).
    #[command(flatten)]
    pub connections: service_kit::serve::ConnectionArgs,
}

/// Where the database URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSource {
    /// Given on the command line.
    Url(String),
    /// A secret in a Dapr secret store, read through the sidecar.
    Secret {
        /// The secret store component.
        store: String,
        /// The secret's name.
        key: String,
    },
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The sidecar's HTTP port.
    pub dapr_http_port: u16,
    /// The pub/sub component.
    pub pubsub: String,
    /// The topic.
    pub topic: String,
    /// The database.
    pub database: DatabaseSource,
    /// How many connections it serves at once.
    pub max_connections: service_kit::serve::ConnectionLimit,
    /// Where its metrics are served, if anywhere.
    pub metrics: service_kit::metrics::MetricsArgs,
}

impl EventsArgs {
    /// Checks the flags.
    pub fn validate(&self) -> Result<EventsConfig, String> {
        let database = match (&self.database_url, &self.database_secret) {
            (Some(url), _) => DatabaseSource::Url(url.clone()),
            (None, Some(secret)) => {
                let (store, key) = secret
                    .split_once('/')
                    .filter(|(s, k)| !s.is_empty() && !k.is_empty())
                    .ok_or_else(|| format!("--database-secret {secret}: use STORE/KEY"))?;
                DatabaseSource::Secret {
                    store: store.into(),
                    key: key.into(),
                }
            }
            (None, None) => {
                let dir: PathBuf = local_dirs::data_dir()
                    .ok_or("no data directory: set --database-url or HOME")?;
                DatabaseSource::Url(format!("sqlite:{}", dir.join("events.db").display()))
            }
        };
        if self.topic.is_empty() || self.pubsub.is_empty() {
            return Err("--pubsub and --topic must not be empty".into());
        }
        Ok(EventsConfig {
            listen: SocketAddr::new(self.bind, self.app_port),
            dapr_http_port: self.dapr_http_port,
            pubsub: self.pubsub.clone(),
            topic: self.topic.clone(),
            database,
            max_connections: self.connections.validate()?,
            metrics: self.metrics.clone(),
        })
    }
}
