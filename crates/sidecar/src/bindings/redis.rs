//! `bindings.redis`: a Redis key as an output binding, as Dapr's Redis
//! binding runs it. Metadata: the Redis connection's
//! ([`crate::redis_conn`]: `redisHost`, `redisPassword`, `redisDB`, ...).
//! Operations, each on the request metadata's `key` (required):
//!
//! - `create`: `SET key data`, then `EXPIRE` when the request has
//!   `ttlInSeconds` (or `ttl`: seconds or a Go duration);
//! - `get`: the value as the answer's data (none for a missing key);
//!   `delete: "true"` reads and deletes it at once (`GETDEL`);
//! - `delete`: `DEL key`;
//! - `increment`: `INCR key`, then `EXPIRE` as for `create`.
//!
//! Only `get` answers data; the others answer nothing (204), as daprd.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{BindingRequest, BindingResponse, OutputBinding, invoke_failed};
use crate::error::DaprError;

/// A `bindings.redis` component.
pub struct RedisBinding {
    name: String,
    connection: ConnectionManager,
}

/// Its operations, in daprd's order.
const OPERATIONS: &[&str] = &["create", "delete", "get", "increment"];

impl RedisBinding {
    /// Connects with the component's metadata.
    pub async fn open(
        name: String,
        properties: &HashMap<String, String>,
    ) -> Result<RedisBinding, String> {
        let connected = crate::redis_conn::connect(properties)
            .await
            .map_err(|e| format!("redis binding: {e}"))?;
        Ok(RedisBinding {
            name,
            connection: connected.connection,
        })
    }

    async fn run(&self, request: BindingRequest) -> Result<Option<BindingResponse>, String> {
        let key = request
            .metadata
            .get("key")
            .filter(|k| !k.is_empty())
            .ok_or("redis binding: missing key in request metadata")?;
        let mut connection = self.connection.clone();
        let failed = |e: redis::RedisError| e.to_string();
        match request.operation.as_str() {
            "get" => {
                let command = if request.metadata.get("delete").is_some_and(|d| d == "true") {
                    "GETDEL"
                } else {
                    "GET"
                };
                let value: Option<Vec<u8>> = redis::cmd(command)
                    .arg(key)
                    .query_async(&mut connection)
                    .await
                    .map_err(failed)?;
                return Ok(Some(BindingResponse {
                    data: value.unwrap_or_default().into(),
                    metadata: HashMap::new(),
                }));
            }
            "delete" => {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<()>(&mut connection)
                    .await
                    .map_err(failed)?;
            }
            "create" | "increment" => {
                let ttl = ttl(&request.metadata)?;
                let write = if request.operation == "create" {
                    let mut set = redis::cmd("SET");
                    set.arg(key).arg(request.data.as_ref());
                    set
                } else {
                    let mut increment = redis::cmd("INCR");
                    increment.arg(key);
                    increment
                };
                write
                    .query_async::<redis::Value>(&mut connection)
                    .await
                    .map_err(failed)?;
                if let Some(ttl) = ttl {
                    redis::cmd("EXPIRE")
                        .arg(key)
                        .arg(ttl.as_secs())
                        .query_async::<()>(&mut connection)
                        .await
                        .map_err(failed)?;
                }
            }
            other => return Err(format!("invalid operation type: {other}")),
        }
        Ok(None)
    }
}

/// The request's `ttlInSeconds` (or `ttl`, either case): whole seconds
/// above 0, or a Go duration.
pub(crate) fn ttl(metadata: &HashMap<String, String>) -> Result<Option<Duration>, String> {
    let Some(text) = metadata
        .iter()
        .find(|(key, _)| {
            key.eq_ignore_ascii_case("ttlInSeconds") || key.eq_ignore_ascii_case("ttl")
        })
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
    else {
        return Ok(None);
    };
    match text.parse::<i64>() {
        Ok(seconds) if seconds <= 0 => Err(format!(
            "ttlInSeconds value must be higher than zero: actual is '{seconds}'"
        )),
        Ok(seconds) => Ok(Some(Duration::from_secs(seconds.unsigned_abs()))),
        Err(_) => service_kit::units::parse_duration(text)
            .map(Some)
            .map_err(|_| format!("ttlInSeconds value must be a valid integer: actual is '{text}'")),
    }
}

#[async_trait::async_trait]
impl OutputBinding for RedisBinding {
    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    async fn invoke(&self, request: BindingRequest) -> Result<Option<BindingResponse>, DaprError> {
        self.run(request)
            .await
            .map_err(|reason| invoke_failed(&self.name, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_read_as_dapr_reads_it() {
        let ttl_of = |key: &str, value: &str| ttl(&HashMap::from([(key.into(), value.into())]));
        assert_eq!(
            ttl_of("ttlInSeconds", "60"),
            Ok(Some(Duration::from_secs(60)))
        );
        assert_eq!(ttl_of("TTL", "1m30s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(ttl(&HashMap::new()), Ok(None));
        assert_eq!(
            ttl_of("ttlInSeconds", "0"),
            Err("ttlInSeconds value must be higher than zero: actual is '0'".into())
        );
        assert_eq!(
            ttl_of("ttlInSeconds", "soon"),
            Err("ttlInSeconds value must be a valid integer: actual is 'soon'".into())
        );
    }
}
