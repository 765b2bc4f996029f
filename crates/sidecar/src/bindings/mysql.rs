//! `bindings.mysql`: SQL on a MySQL or MariaDB database as an output
//! binding, as Dapr's MySQL binding runs it ([`super::sql`] gives the
//! operations and the answer's metadata).
//!
//! Metadata: `url` (required), Go's DSN as Dapr's examples write it
//! (`root:secret@tcp(127.0.0.1:3306)/shop?allowNativePasswords=true`), or
//! a `mysql://` URL; `maxOpenConns` (the pool's size; 10 by default) and
//! `connMaxIdleTime` (how long a connection may stay idle). `pemPath` (TLS)
//! is refused: this build's client has no TLS.
//!
//! - `exec` runs the statement (`?` placeholders take `params`, a JSON
//!   array) and answers `rows-affected`;
//! - `query` answers the rows as a JSON array of objects, one key per
//!   column, as daprd's: numbers as numbers, text as text, times as RFC
//!   3339 UTC (`2026-12-07T10:00:00Z`), `DECIMAL` as text (daprd gives
//!   its bytes in base64), binary data in base64; a NULL column is left
//!   out of its row, as daprd leaves it;
//! - `close` closes the pool for good (204).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Column, Params, Pool, PoolConstraints, PoolOpts, Row};
use serde_json::{Map, Number, Value};

use super::sql::{SqlBinding, SqlDatabase};

/// The default pool size (daprd's Go pool has none; this bounds it).
const DEFAULT_MAX_CONNECTIONS: usize = 10;

/// MySQL's character set number for binary data.
const BINARY_CHARSET: u16 = 63;

/// A `bindings.mysql` component's database, behind [`SqlBinding`].
pub struct MysqlDatabase {
    pool: Pool,
}

/// Reads the metadata and connects (a database that cannot be reached
/// stops the sidecar at start-up, as daprd's ping does).
pub async fn open(
    name: String,
    properties: &HashMap<String, String>,
) -> Result<SqlBinding<MysqlDatabase>, String> {
    let get = |key: &str| super::property(properties, key);
    let url = get("url").ok_or("missing MySql connection string")?;
    if get("pemPath").is_some() {
        return Err("pemPath: TLS connections are not supported by this sidecar".into());
    }
    let options = crate::state::mysql::connection_options(url)
        .map_err(|e| format!("illegal Data Source Name (DSN) specified by url: {e}"))?;
    let max_connections = match get("maxOpenConns") {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
            Ok(_) => DEFAULT_MAX_CONNECTIONS,
            Err(_) => return Err(format!("maxOpenConns `{text}` is not a whole number")),
        },
    };
    let mut pool_options = PoolOpts::default().with_constraints(
        PoolConstraints::new(0, max_connections).ok_or("maxOpenConns must be 1 or more")?,
    );
    if let Some(text) = get("connMaxIdleTime") {
        let idle = service_kit::units::parse_duration(text)
            .map_err(|e| format!("connMaxIdleTime: {e}"))?;
        if !idle.is_zero() {
            pool_options = pool_options.with_inactive_connection_ttl(idle);
        }
    }
    let pool = Pool::new(options.pool_opts(pool_options));
    let database = MysqlDatabase { pool };
    database
        .connection()
        .await
        .map_err(|e| format!("unable to ping the DB: {e}"))?
        .ping()
        .await
        .map_err(|e| format!("unable to ping the DB: {}", error_text(e)))?;
    Ok(SqlBinding::new(name, database))
}

impl MysqlDatabase {
    /// A connection from the pool, within 5 s.
    async fn connection(&self) -> Result<mysql_async::Conn, String> {
        tokio::time::timeout(Duration::from_secs(5), self.pool.get_conn())
            .await
            .map_err(|_| "no answer from MySQL within 5s".to_string())?
            .map_err(error_text)
    }
}

/// A driver error as daprd's Go driver writes the server's (`Error 1146
/// (42S02): Table 'shop.x' doesn't exist`).
fn error_text(err: mysql_async::Error) -> String {
    match err {
        mysql_async::Error::Server(server) => format!(
            "Error {} ({}): {}",
            server.code, server.state, server.message
        ),
        other => other.to_string(),
    }
}

/// `params` as MySQL values: `null` as NULL, booleans as 1 and 0, numbers
/// as numbers, strings as themselves, anything else as its JSON.
fn mysql_params(params: &[Value]) -> Params {
    if params.is_empty() {
        return Params::Empty;
    }
    Params::Positional(
        params
            .iter()
            .map(|param| match param {
                Value::Null => mysql_async::Value::NULL,
                Value::Bool(b) => mysql_async::Value::Int(i64::from(*b)),
                Value::Number(n) => n
                    .as_i64()
                    .map(mysql_async::Value::Int)
                    .or_else(|| n.as_u64().map(mysql_async::Value::UInt))
                    .unwrap_or_else(|| mysql_async::Value::Double(n.as_f64().unwrap_or_default())),
                Value::String(text) => mysql_async::Value::Bytes(text.clone().into_bytes()),
                other => mysql_async::Value::Bytes(other.to_string().into_bytes()),
            })
            .collect(),
    )
}

/// One row as a JSON object, its NULL columns left out.
fn row_json(row: Row) -> Value {
    let columns = row.columns();
    let mut object = Map::new();
    for (column, value) in columns.iter().zip(row.unwrap()) {
        if let Some(value) = column_json(column, value) {
            object.insert(column.name_str().into_owned(), value);
        }
    }
    Value::Object(object)
}

/// A column's value as JSON (`None` for NULL), from the text protocol
/// (bytes, read by the column's type) or the binary one (typed).
fn column_json(column: &Column, value: mysql_async::Value) -> Option<Value> {
    use mysql_async::Value as My;
    Some(match value {
        My::NULL => return None,
        My::Int(n) => Value::from(n),
        My::UInt(n) => Value::from(n),
        My::Float(f) => float(f64::from(f)),
        My::Double(f) => float(f),
        My::Date(year, month, day, hour, minute, second, micros) => {
            Value::String(date_time(year, month, day, hour, minute, second, micros))
        }
        My::Time(negative, days, hours, minutes, seconds, micros) => {
            let hours = u64::from(days) * 24 + u64::from(hours);
            let sign = if negative { "-" } else { "" };
            let fraction = if micros > 0 {
                format!(".{micros:06}")
            } else {
                String::new()
            };
            Value::String(format!(
                "{sign}{hours:02}:{minutes:02}:{seconds:02}{fraction}"
            ))
        }
        My::Bytes(bytes) => bytes_json(column, bytes),
    })
}

/// A value the text protocol sent as bytes, read by its column's type.
fn bytes_json(column: &Column, bytes: Vec<u8>) -> Value {
    let text = || String::from_utf8_lossy(&bytes).into_owned();
    match column.column_type() {
        ColumnType::MYSQL_TYPE_TINY
        | ColumnType::MYSQL_TYPE_SHORT
        | ColumnType::MYSQL_TYPE_LONG
        | ColumnType::MYSQL_TYPE_LONGLONG
        | ColumnType::MYSQL_TYPE_INT24
        | ColumnType::MYSQL_TYPE_YEAR
        | ColumnType::MYSQL_TYPE_FLOAT
        | ColumnType::MYSQL_TYPE_DOUBLE => text()
            .parse::<Number>()
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(text())),
        ColumnType::MYSQL_TYPE_DATE
        | ColumnType::MYSQL_TYPE_DATETIME
        | ColumnType::MYSQL_TYPE_DATETIME2
        | ColumnType::MYSQL_TYPE_TIMESTAMP
        | ColumnType::MYSQL_TYPE_TIMESTAMP2 => Value::String(text_date_time(&text())),
        _ if column.character_set() == BINARY_CHARSET
            && !matches!(
                column.column_type(),
                ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL
            ) =>
        {
            Value::String(base64::engine::general_purpose::STANDARD.encode(&bytes))
        }
        _ => Value::String(text()),
    }
}

/// A date and time as RFC 3339 UTC, as Go's driver reads one (`parseTime`).
fn date_time(
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    micros: u32,
) -> String {
    let fraction = if micros > 0 {
        let digits = format!(".{micros:06}");
        digits.trim_end_matches('0').to_string()
    } else {
        String::new()
    };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
}

/// MySQL's text for a date (`2026-12-07`) or a date and time (`2026-12-07
/// 10:00:00.5`) as RFC 3339 UTC; anything else as it is.
fn text_date_time(text: &str) -> String {
    let (date, time) = text.split_once(' ').unwrap_or((text, "00:00:00"));
    let (time, fraction) = time.split_once('.').unwrap_or((time, ""));
    let fraction = fraction.trim_end_matches('0');
    if date.len() != 10 || time.len() != 8 {
        return text.to_string();
    }
    if fraction.is_empty() {
        format!("{date}T{time}Z")
    } else {
        format!("{date}T{time}.{fraction}Z")
    }
}

fn float(value: f64) -> Value {
    Number::from_f64(value).map_or_else(|| Value::String(value.to_string()), Value::Number)
}

#[async_trait::async_trait]
impl SqlDatabase for MysqlDatabase {
    async fn exec(&self, sql: &str, params: &[Value]) -> Result<u64, String> {
        let failed = |e| format!("error executing query: {}", error_text(e));
        let mut conn = self.connection().await?;
        if params.is_empty() {
            // Not every statement can be prepared (some DDL).
            conn.query_drop(sql).await.map_err(failed)?;
        } else {
            conn.exec_drop(sql, mysql_params(params))
                .await
                .map_err(failed)?;
        }
        Ok(conn.affected_rows())
    }

    async fn query(&self, sql: &str, params: &[Value]) -> Result<Value, String> {
        let failed = |e| format!("error executing query: {}", error_text(e));
        let mut conn = self.connection().await?;
        let rows: Vec<Row> = if params.is_empty() {
            conn.query(sql).await.map_err(failed)?
        } else {
            conn.exec(sql, mysql_params(params)).await.map_err(failed)?
        };
        Ok(Value::Array(rows.into_iter().map(row_json).collect()))
    }

    async fn close(&self) {
        if let Err(error) = self.pool.clone().disconnect().await {
            tracing::warn!(%error, "closing the MySQL pool");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_are_written_as_go_writes_them() {
        assert_eq!(date_time(2026, 12, 7, 10, 0, 5, 0), "2026-12-07T10:00:05Z");
        assert_eq!(
            date_time(2026, 12, 7, 10, 0, 5, 500_000),
            "2026-12-07T10:00:05.5Z"
        );
        assert_eq!(text_date_time("2026-12-07"), "2026-12-07T00:00:00Z");
        assert_eq!(
            text_date_time("2026-12-07 10:00:05.250000"),
            "2026-12-07T10:00:05.25Z"
        );
        assert_eq!(
            text_date_time("0000-00-00 00:00:00"),
            "0000-00-00T00:00:00Z"
        );
        assert_eq!(text_date_time("soon"), "soon");
    }

    #[test]
    fn json_params_become_mysql_values() {
        let Params::Positional(values) = mysql_params(&[
            Value::Null,
            Value::Bool(true),
            Value::from(-7),
            Value::from(2.5),
            Value::from("text"),
            serde_json::json!({"a": 1}),
        ]) else {
            panic!("positional params");
        };
        use mysql_async::Value as My;
        assert_eq!(
            values,
            [
                My::NULL,
                My::Int(1),
                My::Int(-7),
                My::Double(2.5),
                My::Bytes(b"text".to_vec()),
                My::Bytes(br#"{"a":1}"#.to_vec()),
            ]
        );
        assert!(matches!(mysql_params(&[]), Params::Empty));
    }
}
