//! `state.redis`: state in Redis, laid out as daprd lays it out.
//!
//! Each key is a hash with fields `data` (the JSON value) and `version` (the
//! etag, incremented on every write). One Lua script checks every etag of a
//! request and then applies all its operations, so saves, deletes and
//! transactions are atomic. TTLs are Redis expiries. The connection manager
//! reconnects by itself after Redis restarts.
//!
//! Metadata: the connection's ([`crate::redis_conn`]: `redisHost`,
//! `redisPassword`, `redisUsername`, `redisDB`, `dialTimeout`,
//! `readTimeout`).

use std::collections::HashMap;

use redis::aio::ConnectionManager;

use super::{
    Concurrency, DeleteRequest, Operation, SetRequest, StateItem, StateStore, StoreError,
    parse_etag,
};

/// Checks every operation's etag, then applies them all.
///
/// `ARGV` holds five values per operation, in the order of `KEYS`:
/// kind (`set`/`del`), value, expected etag (`""` for none), first-write
/// (`1`/`0`), TTL seconds (`0` for none).
const TRANSACT: &str = r#"
for i, key in ipairs(KEYS) do
  local base = (i - 1) * 5
  local etag = ARGV[base + 3]
  local version = redis.call("HGET", key, "version")
  if etag ~= "" then
    if version == false or version ~= etag then
      return redis.error_reply("ETAG_MISMATCH " .. key)
    end
  elseif ARGV[base + 4] == "1" and ARGV[base + 1] == "set" and version ~= false then
    return redis.error_reply("ETAG_MISMATCH " .. key)
  end
end
for i, key in ipairs(KEYS) do
  local base = (i - 1) * 5
  if ARGV[base + 1] == "del" then
    redis.call("DEL", key)
  else
    redis.call("HINCRBY", key, "version", 1)
    redis.call("HSET", key, "data", ARGV[base + 2])
    local ttl = tonumber(ARGV[base + 5])
    if ttl > 0 then
      redis.call("EXPIRE", key, ttl)
    else
      redis.call("PERSIST", key)
    end
  end
end
return 0
"#;

/// A Redis-backed [`StateStore`].
pub struct RedisStore {
    connection: ConnectionManager,
    transact: redis::Script,
}

fn backend(err: redis::RedisError) -> StoreError {
    StoreError::Backend(err.to_string())
}

impl RedisStore {
    /// Connects with the component's metadata.
    pub async fn open(properties: &HashMap<String, String>) -> Result<Self, StoreError> {
        let connected = crate::redis_conn::connect(properties)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(RedisStore {
            connection: connected.connection,
            transact: redis::Script::new(TRANSACT),
        })
    }
}

#[async_trait::async_trait]
impl StateStore for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<StateItem>, StoreError> {
        let mut connection = self.connection.clone();
        // The item and its time to live (ms; negative when it has none),
        // in one round trip.
        let ((data, version), ttl_ms): ((Option<Vec<u8>>, Option<String>), i64) = redis::pipe()
            .cmd("HMGET")
            .arg(key)
            .arg("data")
            .arg("version")
            .cmd("PTTL")
            .arg(key)
            .query_async(&mut connection)
            .await
            .map_err(backend)?;
        Ok(match (data, version) {
            (Some(value), Some(etag)) => Some(StateItem {
                value,
                etag,
                expires_ms: (ttl_ms >= 0).then(|| crate::unix_millis().saturating_add(ttl_ms)),
            }),
            _ => None,
        })
    }

    async fn set(&self, request: SetRequest) -> Result<(), StoreError> {
        self.transact(vec![Operation::Upsert(request)]).await
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), StoreError> {
        self.transact(vec![Operation::Delete(request)]).await
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StoreError> {
        let mut invocation = self.transact.prepare_invoke();
        for operation in &operations {
            let (kind, key, value, etag, concurrency, ttl) = match operation {
                Operation::Upsert(r) => (
                    "set",
                    &r.key,
                    r.value.as_slice(),
                    r.etag.as_deref(),
                    r.concurrency,
                    r.ttl_seconds.unwrap_or(0),
                ),
                Operation::Delete(r) => {
                    ("del", &r.key, &[][..], r.etag.as_deref(), r.concurrency, 0)
                }
            };
            let etag = match etag {
                Some(etag) => parse_etag(etag)?.to_string(),
                None => String::new(),
            };
            let first_write = if concurrency == Concurrency::FirstWrite {
                "1"
            } else {
                "0"
            };
            invocation
                .key(key)
                .arg(kind)
                .arg(value)
                .arg(etag)
                .arg(first_write)
                .arg(ttl);
        }
        let mut connection = self.connection.clone();
        invocation
            .invoke_async::<i64>(&mut connection)
            .await
            .map(drop)
            .map_err(|err| {
                if err.to_string().contains("ETAG_MISMATCH") {
                    StoreError::EtagMismatch(
                        "the etag does not match the current version (or first-write found the key)"
                            .into(),
                    )
                } else {
                    backend(err)
                }
            })
    }
}
