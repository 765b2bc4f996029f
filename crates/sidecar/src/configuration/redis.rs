//! `configuration.redis`: each item is a Redis string key holding
//! `value||version` (or only a value), as Dapr's Redis configuration store
//! reads them; keys of other types are left out.
//!
//! A watch turns on Redis's keyspace notifications for string and generic
//! commands (`CONFIG SET notify-keyspace-events Kg$xe`, as daprd does;
//! a Redis that refuses `CONFIG` must have them on already) and subscribes
//! to `__keyspace@<db>__:<key>` of each key, or to the pattern
//! `__keyspace@<db>__:*` for every key, on a connection of its own (made
//! again when Redis drops it). Each notification reads the key again: its
//! item, or an empty one when it is gone. The connection takes the same metadata as every Redis component
//! ([`crate::redis_conn`]).

use std::collections::HashMap;

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::{Changes, ConfigurationError, ConfigurationStore, Item, Items};

/// The separator of an item's value and version.
const VERSION_SEPARATOR: &str = "||";

/// The first wait before a watch whose connection dropped subscribes
/// again.
const RESUBSCRIBE_FIRST_WAIT: Duration = Duration::from_millis(100);
/// The longest wait between its tries.
const RESUBSCRIBE_LONGEST_WAIT: Duration = Duration::from_secs(5);

/// A Redis-backed [`ConfigurationStore`].
pub struct RedisConfiguration {
    client: redis::Client,
    connection: ConnectionManager,
    /// Its database (`redisDB`), which names its keyspace channels.
    db: i64,
}

fn backend(err: redis::RedisError) -> ConfigurationError {
    ConfigurationError(err.to_string())
}

impl RedisConfiguration {
    /// Connects with the component's metadata.
    pub async fn open(properties: &HashMap<String, String>) -> Result<Self, String> {
        let db = match properties.get("redisDB").map(|d| d.trim()) {
            None | Some("") => 0,
            Some(text) => text
                .parse()
                .map_err(|_| format!("redisDB `{text}` is not a number"))?,
        };
        let connected = crate::redis_conn::connect(properties)
            .await
            .map_err(|e| e.to_string())?;
        Ok(RedisConfiguration {
            client: connected.client,
            connection: connected.connection,
            db,
        })
    }

    /// The keyspace channel of `key` (a pattern when `key` is `*`).
    fn channel(&self, key: &str) -> String {
        format!("__keyspace@{}__:{key}", self.db)
    }
}

/// The items of `keys` that are strings with a value, read with `MGET`.
async fn read(connection: &ConnectionManager, keys: &[String]) -> Result<Items, redis::RedisError> {
    if keys.is_empty() {
        return Ok(Items::new());
    }
    let mut connection = connection.clone();
    // `MGET` answers nil for a key that is missing or not a string.
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(keys)
        .query_async(&mut connection)
        .await?;
    Ok(keys
        .iter()
        .zip(values)
        .filter_map(|(key, value)| Some((key.clone(), item(&value?)?)))
        .collect())
}

/// The item a Redis value holds: `value||version` or a value; none when
/// the value is empty.
fn item(stored: &str) -> Option<Item> {
    let mut parts = stored.split(VERSION_SEPARATOR);
    let value = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default();
    (!value.is_empty()).then(|| Item {
        value: value.to_string(),
        version: version.to_string(),
        metadata: HashMap::new(),
    })
}

#[async_trait::async_trait]
impl ConfigurationStore for RedisConfiguration {
    async fn get(
        &self,
        keys: &[String],
        _metadata: &HashMap<String, String>,
    ) -> Result<Items, ConfigurationError> {
        if !keys.is_empty() {
            return read(&self.connection, keys).await.map_err(backend);
        }
        // SCAN, not daprd's KEYS *: a large Redis is not blocked while
        // every key is listed. (A key may come twice; once is kept.)
        let mut connection = self.connection.clone();
        let mut every = std::collections::BTreeSet::new();
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            every.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let every: Vec<String> = every.into_iter().collect();
        read(&self.connection, &every).await.map_err(backend)
    }

    async fn watch(
        &self,
        keys: &[String],
        _metadata: &HashMap<String, String>,
    ) -> Result<Changes, ConfigurationError> {
        let watch = Watch {
            client: self.client.clone(),
            connection: self.connection.clone(),
            channels: keys.iter().map(|key| self.channel(key)).collect(),
            every_key: self.channel("*"),
            prefix: self.channel(""),
        };
        let pubsub = watch.subscribe().await.map_err(backend)?;
        let (sender, changes) = mpsc::channel(16);
        tokio::spawn(watch.run(pubsub, sender));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            changes,
        )))
    }
}

/// One watch: the keyspace channels of its keys (none: the pattern of
/// every key).
struct Watch {
    client: redis::Client,
    connection: ConnectionManager,
    channels: Vec<String>,
    every_key: String,
    /// What a channel's name starts with before its key.
    prefix: String,
}

impl Watch {
    /// Turns keyspace notifications on and subscribes, on a connection of
    /// its own.
    async fn subscribe(&self) -> Result<redis::aio::PubSub, redis::RedisError> {
        // On a connection of its own: the shared one may still hold the
        // failure of a Redis that has just come back.
        let mut connection = self.client.get_multiplexed_async_connection().await?;
        let notify: Result<(), _> = redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg("Kg$xe")
            .query_async(&mut connection)
            .await;
        if let Err(e) = notify {
            tracing::warn!(error = %e, "cannot turn on Redis keyspace notifications; they must be on already");
        }
        let mut pubsub = self.client.get_async_pubsub().await?;
        if self.channels.is_empty() {
            pubsub.psubscribe(&self.every_key).await?;
        } else {
            pubsub.subscribe(&self.channels).await?;
        }
        Ok(pubsub)
    }

    /// Sends each change to `sender` until its receiver is gone. When Redis
    /// drops the connection it subscribes again (as Dapr's Redis client
    /// does), trying every [`RESUBSCRIBE_FIRST_WAIT`] doubling up to
    /// [`RESUBSCRIBE_LONGEST_WAIT`]; changes made meanwhile are not seen.
    async fn run(self, mut pubsub: redis::aio::PubSub, sender: mpsc::Sender<Items>) {
        loop {
            let mut messages = pubsub.into_on_message();
            loop {
                let message = tokio::select! {
                    message = messages.next() => message,
                    () = sender.closed() => return,
                };
                let Some(message) = message else { break };
                let Some(items) = self.change(message.get_channel_name()).await else {
                    continue;
                };
                if sender.send(items).await.is_err() {
                    return;
                }
            }
            drop(messages);
            tracing::warn!("a configuration watch lost its Redis connection; subscribing again");
            let mut wait = RESUBSCRIBE_FIRST_WAIT;
            pubsub = loop {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = sender.closed() => return,
                }
                match self.subscribe().await {
                    Ok(pubsub) => break pubsub,
                    Err(e) => {
                        tracing::warn!(error = %e, "a configuration watch cannot subscribe again yet");
                        wait = (wait * 2).min(RESUBSCRIBE_LONGEST_WAIT);
                    }
                }
            };
            tracing::info!("a configuration watch is subscribed again");
        }
    }

    /// The items a notification on `channel` reports: its key's item, or
    /// an empty one when the key is gone (deleted, expired, or no longer a
    /// string).
    async fn change(&self, channel: &str) -> Option<Items> {
        let key = channel.strip_prefix(&self.prefix)?.to_string();
        let keys = std::slice::from_ref(&key);
        // Once more on a failure: the first command after Redis comes back
        // gets the failure of the reconnection tried while it was down.
        let read = match read(&self.connection, keys).await {
            Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                read(&self.connection, keys).await
            }
            read => read,
        };
        match read {
            Ok(items) if items.is_empty() => Some(Items::from([(key, Item::default())])),
            Ok(items) => Some(items),
            Err(e) => {
                tracing::error!(%key, error = %e, "cannot read a changed configuration item");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_dapr_reads_them() {
        let got = |stored: &str| item(stored).map(|i| (i.value, i.version));
        assert_eq!(got("10"), Some(("10".into(), String::new())));
        assert_eq!(got("10||v2"), Some(("10".into(), "v2".into())));
        assert_eq!(got("10||v2||extra"), Some(("10".into(), "v2".into())));
        assert_eq!(got(""), None);
        assert_eq!(got("||v2"), None);
    }
}
