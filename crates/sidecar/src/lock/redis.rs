//! `lock.redis`: a lock is a Redis key holding its owner, set only if it
//! is not there (`SET key owner NX EX seconds`), and deleted only by its
//! owner (a script that compares first), as Dapr's Redis lock does. The
//! connection takes the same metadata as every Redis component
//! ([`crate::redis_conn`]).

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{LockError, LockStore, UnlockStatus};

/// Deletes the key if it holds the owner: 1 when deleted, -1 when there is
/// no key, -2 when another owner holds it.
const UNLOCK: &str = r#"
local owner = redis.call("GET", KEYS[1])
if owner == false then
  return -1
end
if owner ~= ARGV[1] then
  return -2
end
return redis.call("DEL", KEYS[1])
"#;

/// A Redis-backed [`LockStore`].
pub struct RedisLock {
    connection: ConnectionManager,
    unlock: redis::Script,
}

fn backend(err: redis::RedisError) -> LockError {
    LockError(err.to_string())
}

impl RedisLock {
    /// Connects with the component's metadata.
    pub async fn open(properties: &HashMap<String, String>) -> Result<Self, String> {
        let connected = crate::redis_conn::connect(properties)
            .await
            .map_err(|e| e.to_string())?;
        Ok(RedisLock {
            connection: connected.connection,
            unlock: redis::Script::new(UNLOCK),
        })
    }
}

#[async_trait::async_trait]
impl LockStore for RedisLock {
    async fn try_lock(&self, key: &str, owner: &str, expiry: Duration) -> Result<bool, LockError> {
        let mut connection = self.connection.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(owner)
            .arg("NX")
            .arg("EX")
            .arg(expiry.as_secs())
            .query_async(&mut connection)
            .await
            .map_err(backend)?;
        Ok(set.is_some())
    }

    async fn unlock(&self, key: &str, owner: &str) -> Result<UnlockStatus, LockError> {
        let mut connection = self.connection.clone();
        let outcome: i64 = self
            .unlock
            .key(key)
            .arg(owner)
            .invoke_async(&mut connection)
            .await
            .map_err(backend)?;
        match outcome {
            1 => Ok(UnlockStatus::Success),
            -1 => Ok(UnlockStatus::LockDoesNotExist),
            -2 => Ok(UnlockStatus::LockBelongsToOthers),
            other => Err(LockError(format!("the unlock script answered {other}"))),
        }
    }
}
