//! What Dapr's SQL bindings share (`bindings.postgresql`, `bindings.mysql`):
//! the operations `exec`, `query` and `close`, the request metadata `sql`
//! and `params` (a JSON array), and the answer's metadata, as daprd gives
//! it: `operation`, `sql`, `start-time`, `end-time`, `duration`, and
//! `rows-affected` for `exec`. Each database is a [`SqlDatabase`] behind
//! one [`SqlBinding`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{BindingRequest, BindingResponse, OutputBinding, invoke_failed};
use crate::error::DaprError;

/// One database a SQL binding runs statements on.
#[async_trait::async_trait]
pub trait SqlDatabase: Send + Sync {
    /// Runs a statement: how many rows it changed. Errors are daprd's
    /// (`error executing query: ...`).
    async fn exec(&self, sql: &str, params: &[Value]) -> Result<u64, String>;
    /// Runs a query: its rows, as the binding writes them.
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Value, String>;
    /// Closes its connections for good.
    async fn close(&self);
}

/// A SQL binding component: [`SqlDatabase`] `D`, with Dapr's operations.
pub struct SqlBinding<D> {
    name: String,
    database: D,
    closed: AtomicBool,
}

impl<D: SqlDatabase> SqlBinding<D> {
    /// The binding `name` on `database`.
    pub fn new(name: String, database: D) -> Self {
        SqlBinding {
            name,
            database,
            closed: AtomicBool::new(false),
        }
    }

    async fn run(&self, request: BindingRequest) -> Result<Option<BindingResponse>, String> {
        if request.operation == "close" {
            self.closed.store(true, Ordering::Relaxed);
            self.database.close().await;
            return Ok(None);
        }
        if self.closed.load(Ordering::Relaxed) {
            return Err("component is closed".into());
        }
        let sql = request
            .metadata
            .get("sql")
            .filter(|s| !s.is_empty())
            .ok_or("required metadata not set: sql")?;
        let params: Vec<Value> = match request.metadata.get("params").filter(|p| !p.is_empty()) {
            None => Vec::new(),
            Some(params) => serde_json::from_str(params).map_err(|e| {
                format!(
                    "invalid metadata property params: failed to unserialize into an array: {e}"
                )
            })?,
        };
        let started_at = Utc::now();
        let started = Instant::now();
        let mut metadata = HashMap::from([
            ("operation".to_string(), request.operation.clone()),
            ("sql".to_string(), sql.clone()),
            ("start-time".to_string(), rfc3339_nanos(started_at)),
        ]);
        let mut data = Bytes::new();
        if request.operation == "exec" {
            let rows = self.database.exec(sql, &params).await?;
            metadata.insert("rows-affected".into(), rows.to_string());
        } else {
            let rows = self.database.query(sql, &params).await?;
            data = Bytes::from(rows.to_string());
        }
        let elapsed = started.elapsed();
        let ended_at = started_at + chrono::Duration::from_std(elapsed).unwrap_or_default();
        metadata.insert("end-time".into(), rfc3339_nanos(ended_at));
        metadata.insert("duration".into(), go_duration_string(elapsed));
        Ok(Some(BindingResponse { data, metadata }))
    }
}

#[async_trait::async_trait]
impl<D: SqlDatabase> OutputBinding for SqlBinding<D> {
    fn operations(&self) -> &'static [&'static str] {
        &["exec", "query", "close"]
    }

    async fn invoke(&self, request: BindingRequest) -> Result<Option<BindingResponse>, DaprError> {
        self.run(request)
            .await
            .map_err(|reason| invoke_failed(&self.name, reason))
    }
}

/// `time` as Go's `time.RFC3339Nano` writes a UTC time (trailing zeros
/// of the fraction dropped).
pub(crate) fn rfc3339_nanos(time: DateTime<Utc>) -> String {
    let text = time.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}Z")
}

/// `elapsed` as Go's `Duration.String()` writes one under a minute
/// (`1.234ms`, `2.5s`, `830µs`).
pub(crate) fn go_duration_string(elapsed: Duration) -> String {
    let nanos = elapsed.as_nanos();
    let (value, unit) = match nanos {
        0 => return "0s".into(),
        n if n < 1_000 => (n as f64, "ns"),
        n if n < 1_000_000 => (n as f64 / 1e3, "µs"),
        n if n < 1_000_000_000 => (n as f64 / 1e6, "ms"),
        n => (n as f64 / 1e9, "s"),
    };
    let text = format!("{value:.9}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_are_written_as_go_writes_them() {
        assert_eq!(go_duration_string(Duration::from_micros(1_234)), "1.234ms");
        assert_eq!(go_duration_string(Duration::from_millis(2_500)), "2.5s");
        assert_eq!(go_duration_string(Duration::from_nanos(830_000)), "830µs");
        assert_eq!(go_duration_string(Duration::from_nanos(12)), "12ns");
        let time = DateTime::parse_from_rfc3339("2026-12-07T19:30:00.120Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339_nanos(time), "2026-12-07T19:30:00.12Z");
        let whole = DateTime::parse_from_rfc3339("2026-12-07T19:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339_nanos(whole), "2026-12-07T19:30:00Z");
    }
}
