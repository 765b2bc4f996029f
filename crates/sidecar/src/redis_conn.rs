//! The Redis connection every Redis component (`state.redis`,
//! `pubsub.redis`) makes from Dapr's metadata: `redisHost` (`host:port`,
//! default `localhost:6379`), `redisUsername`, `redisPassword`, `redisDB`,
//! and Dapr's timeouts: `dialTimeout` (connecting, default 5 s) and
//! `readTimeout` (one command's answer, default 3 s; `-1` for none). A
//! bare number is milliseconds, as in Dapr's Redis settings.
//!
//! When the connection drops, it reconnects as Dapr's Redis client does:
//! `redisMaxRetries` tries (default 3), waiting from
//! `redisMinRetryInterval` (8 ms) doubling up to `redisMaxRetryInterval`
//! (512 ms). A command meanwhile waits for that reconnection, so these
//! bound how long a call takes to fail when Redis is down (the Redis
//! client's own defaults, 6 tries from 100 ms, took about 7 s).

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Dapr's default `dialTimeout`.
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Dapr's default `readTimeout` (the Redis client's own is 500 ms, which
/// fails commands a busy Redis answers a little late).
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Dapr's default `redisMaxRetries`.
const DEFAULT_MAX_RETRIES: usize = 3;
/// Dapr's default `redisMinRetryInterval`.
const DEFAULT_MIN_RETRY_INTERVAL: Duration = Duration::from_millis(8);
/// Dapr's default `redisMaxRetryInterval`.
const DEFAULT_MAX_RETRY_INTERVAL: Duration = Duration::from_millis(512);

/// How a dropped connection is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reconnect {
    tries: usize,
    first_wait: Duration,
    longest_wait: Duration,
}

/// Why a Redis component could not connect.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The component's metadata is wrong.
    #[error("{0}")]
    Metadata(String),
    /// Redis refused, failed or did not answer.
    #[error("{0}")]
    Redis(String),
}

/// A connected Redis component: its client (for connections of its own),
/// its `host:port` (for messages) and a connection that reconnects.
pub(crate) struct Connected {
    pub client: redis::Client,
    pub host: String,
    pub connection: ConnectionManager,
}

/// Connects with the component's metadata, within its `dialTimeout`.
pub(crate) async fn connect(
    properties: &HashMap<String, String>,
) -> Result<Connected, ConnectError> {
    let (dial, read) = timeouts(properties).map_err(ConnectError::Metadata)?;
    let reconnect = reconnect(properties).map_err(ConnectError::Metadata)?;
    let (client, host) = client(properties).map_err(|e| ConnectError::Metadata(e.to_string()))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(dial))
        .set_response_timeout(read)
        .set_number_of_retries(reconnect.tries)
        .set_min_delay(reconnect.first_wait)
        .set_max_delay(reconnect.longest_wait);
    let connection = tokio::time::timeout(
        dial,
        ConnectionManager::new_with_config(client.clone(), config),
    )
    .await
    .map_err(|_| ConnectError::Redis(format!("no answer from Redis at {host} within {dial:?}")))?
    .map_err(|e| ConnectError::Redis(format!("Redis at {host}: {e}")))?;
    Ok(Connected {
        client,
        host,
        connection,
    })
}

/// `dialTimeout` and `readTimeout` (`None`: no limit).
fn timeouts(properties: &HashMap<String, String>) -> Result<(Duration, Option<Duration>), String> {
    let dial = redis_duration(properties, "dialTimeout", DEFAULT_DIAL_TIMEOUT)?
        .unwrap_or(DEFAULT_DIAL_TIMEOUT);
    let read = redis_duration(properties, "readTimeout", DEFAULT_READ_TIMEOUT)?;
    Ok((dial, read))
}

/// `redisMaxRetries`, `redisMinRetryInterval` and `redisMaxRetryInterval`
/// (a negative interval: no wait).
fn reconnect(properties: &HashMap<String, String>) -> Result<Reconnect, String> {
    let tries = match properties.get("redisMaxRetries").map(|v| v.trim()) {
        None | Some("") => DEFAULT_MAX_RETRIES,
        Some(text) => text
            .parse()
            .map_err(|_| format!("redisMaxRetries: `{text}` is not a number of tries"))?,
    };
    let wait = |name: &str, default: Duration| -> Result<Duration, String> {
        Ok(redis_duration(properties, name, default)?.unwrap_or(Duration::ZERO))
    };
    let first_wait = wait("redisMinRetryInterval", DEFAULT_MIN_RETRY_INTERVAL)?;
    let longest_wait = wait("redisMaxRetryInterval", DEFAULT_MAX_RETRY_INTERVAL)?.max(first_wait);
    Ok(Reconnect {
        tries,
        first_wait,
        longest_wait,
    })
}

/// One of Dapr's Redis durations: `500ms`, `3s`, `1m`, or a number of
/// milliseconds; unset or 0 is `default`, a negative number no limit.
fn redis_duration(
    properties: &HashMap<String, String>,
    name: &str,
    default: Duration,
) -> Result<Option<Duration>, String> {
    let Some(text) = properties
        .get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    else {
        return Ok(Some(default));
    };
    let limit = match text.parse::<i64>() {
        Ok(ms) if ms < 0 => return Ok(None),
        Ok(ms) => Duration::from_millis(ms.unsigned_abs()),
        Err(_) => service_kit::units::parse_duration(text).map_err(|e| format!("{name}: {e}"))?,
    };
    Ok(Some(if limit.is_zero() { default } else { limit }))
}

/// A client for the component's Redis, and its `host:port` for messages.
fn client(
    properties: &HashMap<String, String>,
) -> Result<(redis::Client, String), redis::RedisError> {
    let host = properties
        .get("redisHost")
        .filter(|h| !h.is_empty())
        .map(String::as_str)
        .unwrap_or("localhost:6379");
    let mut url = String::from("redis://");
    let user = properties.get("redisUsername").filter(|u| !u.is_empty());
    let password = properties.get("redisPassword").filter(|p| !p.is_empty());
    match (user, password) {
        (Some(user), Some(password)) => url.push_str(&format!("{user}:{password}@")),
        (None, Some(password)) => url.push_str(&format!(":{password}@")),
        _ => {}
    }
    url.push_str(host);
    if let Some(db) = properties.get("redisDB").filter(|d| !d.is_empty()) {
        url.push_str(&format!("/{db}"));
    }
    Ok((redis::Client::open(url)?, host.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts_of(pairs: &[(&str, &str)]) -> Result<(Duration, Option<Duration>), String> {
        let properties = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        timeouts(&properties)
    }

    #[test]
    fn reconnection_as_dapr_reads_it() {
        let of = |pairs: &[(&str, &str)]| {
            let properties = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            reconnect(&properties)
        };
        assert_eq!(
            of(&[]),
            Ok(Reconnect {
                tries: 3,
                first_wait: Duration::from_millis(8),
                longest_wait: Duration::from_millis(512),
            })
        );
        assert_eq!(
            of(&[
                ("redisMaxRetries", "0"),
                ("redisMinRetryInterval", "-1"),
                ("redisMaxRetryInterval", "2s"),
            ]),
            Ok(Reconnect {
                tries: 0,
                first_wait: Duration::ZERO,
                longest_wait: Duration::from_secs(2),
            })
        );
        // The longest wait is never shorter than the first.
        assert_eq!(
            of(&[("redisMinRetryInterval", "1s")]).map(|r| r.longest_wait),
            Ok(Duration::from_secs(1))
        );
        let garbage = of(&[("redisMaxRetries", "many")]).unwrap_err();
        assert!(garbage.starts_with("redisMaxRetries: "), "{garbage}");
    }

    #[test]
    fn timeouts_as_dapr_reads_them() {
        let defaults = (DEFAULT_DIAL_TIMEOUT, Some(DEFAULT_READ_TIMEOUT));
        assert_eq!(timeouts_of(&[]), Ok(defaults));
        assert_eq!(
            timeouts_of(&[("dialTimeout", "0"), ("readTimeout", "")]),
            Ok(defaults)
        );
        assert_eq!(
            timeouts_of(&[("dialTimeout", "2s"), ("readTimeout", "-1")]),
            Ok((Duration::from_secs(2), None))
        );
        assert_eq!(
            timeouts_of(&[("dialTimeout", "1500"), ("readTimeout", "250ms")]),
            Ok((
                Duration::from_millis(1500),
                Some(Duration::from_millis(250))
            ))
        );
        let garbage = timeouts_of(&[("readTimeout", "soon")]).unwrap_err();
        assert!(garbage.starts_with("readTimeout: "), "{garbage}");
    }
}
