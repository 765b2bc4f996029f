//! The Redis connection every Redis component (`state.redis`,
//! `pubsub.redis`) makes from Dapr's metadata: `redisHost` (`host:port`,
//! default `localhost:6379`), `redisUsername`, `redisPassword`, `redisDB`.

use std::collections::HashMap;

/// A client for the component's Redis, and its `host:port` for messages.
pub(crate) fn client(
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
