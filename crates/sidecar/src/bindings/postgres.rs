//! `bindings.postgresql`: SQL on a PostgreSQL database as an output
//! binding, as Dapr's PostgreSQL binding runs it (the one the Dapr
//! bindings quickstart writes its orders with).
//!
//! Metadata: `connectionString` (or its older name `url`; libpq key=value
//! or a `postgres://` URL). Operations, each with the request metadata
//! `sql` and, optionally, `params` (a JSON array for `$1`, `$2`, ...):
//!
//! - `exec`: runs the statement; the answer's metadata has
//!   `rows-affected`;
//! - `query`: runs it and answers the rows as a JSON array of arrays, one
//!   value per column (numbers, text, booleans, JSON as itself, times as
//!   RFC 3339 text, `bytea` as base64, UUIDs as text; a column of another
//!   type, such as an array or an interval, is `null`: cast it in the
//!   query, `tags::text`);
//! - `close`: closes the connection for good, as Dapr's does (and answers
//!   nothing: 204).
//!
//! Each answer's metadata also has `operation`, `sql`, `start-time`,
//! `end-time` and `duration`, as daprd gives them ([`super::sql`]).
//! Parameters are sent as
//! text and PostgreSQL reads each as its column's type (`42` into an
//! `integer`, `"2026-12-07"` into a `date`), as Dapr's pgx driver accepts
//! JSON values. Calls share one connection (statements are pipelined on
//! it), opened again when the server dropped it.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::BytesMut;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use serde_json::{Number, Value};
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Row};

use super::sql::{SqlBinding, SqlDatabase, rfc3339_nanos};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A `bindings.postgresql` component's database, behind [`SqlBinding`].
pub struct PostgresDatabase {
    config: tokio_postgres::Config,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

/// Reads the metadata and connects (a database that cannot be reached
/// stops the sidecar at start-up, as daprd's ping does).
pub async fn open(
    name: String,
    properties: &HashMap<String, String>,
) -> Result<SqlBinding<PostgresDatabase>, String> {
    let connection_string = ["connectionString", "url"]
        .iter()
        .find_map(|key| properties.get(*key).filter(|c| !c.is_empty()))
        .ok_or("metadata `connectionString` is required")?;
    let mut config: tokio_postgres::Config = connection_string
        .parse()
        .map_err(|e| format!("metadata `connectionString`: {e}"))?;
    if config.get_application_name().is_none() {
        config.application_name("dapr-wasm");
    }
    let database = PostgresDatabase {
        config,
        client: tokio::sync::Mutex::new(None),
    };
    database
        .client()
        .await
        .map_err(|e| format!("unable to connect to the DB: {e}"))?;
    Ok(SqlBinding::new(name, database))
}

impl PostgresDatabase {
    /// The shared connection, opened again if the server dropped it.
    async fn client(&self) -> Result<Arc<Client>, String> {
        let mut client = self.client.lock().await;
        if let Some(open) = client.as_ref().filter(|c| !c.is_closed()) {
            return Ok(open.clone());
        }
        let (opened, connection) =
            tokio::time::timeout(CONNECT_TIMEOUT, self.config.connect(NoTls))
                .await
                .map_err(|_| format!("no answer from PostgreSQL within {CONNECT_TIMEOUT:?}"))?
                .map_err(|e| error_text(&e))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(error = %err, "PostgreSQL connection closed");
            }
        });
        let opened = Arc::new(opened);
        *client = Some(opened.clone());
        Ok(opened)
    }
}

#[async_trait::async_trait]
impl SqlDatabase for PostgresDatabase {
    async fn exec(&self, sql: &str, params: &[Value]) -> Result<u64, String> {
        let params: Vec<TextParam> = params.iter().map(TextParam::of).collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let client = self.client().await?;
        client
            .execute(sql, &params)
            .await
            .map_err(|e| format!("error executing query: {}", error_text(&e)))
    }

    async fn query(&self, sql: &str, params: &[Value]) -> Result<Value, String> {
        let params: Vec<TextParam> = params.iter().map(TextParam::of).collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let client = self.client().await?;
        let rows = client
            .query(sql, &params)
            .await
            .map_err(|e| format!("error executing query: {}", error_text(&e)))?;
        Ok(Value::Array(rows.iter().map(row_json).collect()))
    }

    async fn close(&self) {
        self.client.lock().await.take();
    }
}

/// A driver error with the server's own message, which its `Display`
/// leaves out (`db error` alone).
fn error_text(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match err.source() {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        },
    }
}

/// A parameter sent as text, for PostgreSQL to read as the type the
/// statement gives it: a JSON string as itself, `null` as NULL, anything
/// else as its JSON.
#[derive(Debug)]
struct TextParam(Option<String>);

impl TextParam {
    fn of(value: &Value) -> TextParam {
        TextParam(match value {
            Value::Null => None,
            Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        })
    }
}

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }

    to_sql_checked!();
}

/// Any column's raw value, decoded by [`column_json`].
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// One row as a JSON array.
fn row_json(row: &Row) -> Value {
    (0..row.len())
        .map(|index| {
            let column_type = row.columns()[index].type_();
            match row.try_get::<_, Raw>(index) {
                Ok(Raw(None)) => Value::Null,
                Ok(Raw(Some(raw))) => column_json(column_type, raw),
                Err(_) => Value::Null,
            }
        })
        .collect()
}

/// A column's value (in PostgreSQL's binary format) as JSON.
fn column_json(column_type: &Type, raw: &[u8]) -> Value {
    let decoded: Result<Value, Box<dyn std::error::Error + Sync + Send>> = match *column_type {
        Type::BOOL => bool::from_sql(column_type, raw).map(Value::Bool),
        Type::INT2 => i16::from_sql(column_type, raw).map(Value::from),
        Type::INT4 => i32::from_sql(column_type, raw).map(Value::from),
        Type::INT8 => i64::from_sql(column_type, raw).map(Value::from),
        Type::OID => u32::from_sql(column_type, raw).map(Value::from),
        Type::FLOAT4 => f32::from_sql(column_type, raw).map(|f| float(f64::from(f))),
        Type::FLOAT8 => f64::from_sql(column_type, raw).map(float),
        Type::NUMERIC => numeric_text(raw).map(|text| {
            // A number JSON can hold is one; NaN or Infinity stay text.
            text.parse::<Number>()
                .map(Value::Number)
                .unwrap_or(Value::String(text))
        }),
        Type::JSON => std::str::from_utf8(raw)
            .map_err(Into::into)
            .and_then(|text| serde_json::from_str(text).map_err(Into::into)),
        Type::JSONB => raw
            .split_first()
            .ok_or_else(|| "empty jsonb".into())
            .and_then(|(_, text)| serde_json::from_slice(text).map_err(Into::into)),
        Type::BYTEA => Ok(Value::String(
            base64::engine::general_purpose::STANDARD.encode(raw),
        )),
        // Both in UTC (Go's driver reads a `timestamp` as UTC).
        Type::TIMESTAMPTZ | Type::TIMESTAMP => i64::from_sql(&Type::INT8, raw).map(|micros| {
            let time = postgres_epoch() + chrono::Duration::microseconds(micros);
            Value::String(rfc3339_nanos(time.and_utc()))
        }),
        Type::DATE => i32::from_sql(&Type::INT4, raw).map(|days| {
            let date = postgres_epoch().date() + chrono::Duration::days(i64::from(days));
            Value::String(format!("{date}T00:00:00Z"))
        }),
        Type::TIME => i64::from_sql(&Type::INT8, raw).map(|micros| {
            let time = NaiveTime::MIN + chrono::Duration::microseconds(micros);
            Value::String(time.to_string())
        }),
        Type::UUID => <[u8; 16]>::try_from(raw)
            .map_err(Into::into)
            .map(|bytes| Value::String(uuid_text(bytes))),
        // Text, and the types whose binary form is their text.
        _ if is_text(column_type) => std::str::from_utf8(raw)
            .map(|text| Value::String(text.to_string()))
            .map_err(Into::into),
        // Arrays, intervals, network and geometric types, ranges, money,
        // ...: not decoded (a query can cast them: `tags::text`).
        _ => Err(format!("a {column_type} column is not decoded").into()),
    };
    decoded.unwrap_or(Value::Null)
}

/// Whether a column of `column_type` comes as its text (text, varchar,
/// char, name, xml, citext, enums).
fn is_text(column_type: &Type) -> bool {
    matches!(
        *column_type,
        Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::CHAR
            | Type::UNKNOWN
            | Type::XML
    ) || matches!(column_type.kind(), Kind::Enum(_))
        || column_type.name() == "citext"
}

fn float(value: f64) -> Value {
    Number::from_f64(value).map_or_else(|| Value::String(value.to_string()), Value::Number)
}

/// 2000-01-01 00:00:00, where PostgreSQL's times count from.
fn postgres_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

fn uuid_text(bytes: [u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A `numeric` in PostgreSQL's binary format as decimal text: digit
/// count, weight (of the first base-10000 digit), sign, scale, then the
/// base-10000 digits.
fn numeric_text(raw: &[u8]) -> Result<String, Box<dyn std::error::Error + Sync + Send>> {
    let word = |at: usize| -> Result<u16, Box<dyn std::error::Error + Sync + Send>> {
        raw.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "short numeric".into())
    };
    let digits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    let scale = usize::from(word(6)?);
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let groups: Vec<u16> = (0..digits)
        .map(|i| word(8 + 2 * i))
        .collect::<Result<_, _>>()?;
    let group = |position: i32| -> u16 {
        // The group `position` places left of the point (weight 0 is the
        // units group), 0 where none is stored.
        usize::try_from(weight - position)
            .ok()
            .and_then(|i| groups.get(i).copied())
            .unwrap_or(0)
    };
    let mut integer = String::new();
    for position in (0..=weight.max(0)).rev() {
        if integer.is_empty() {
            if group(position) != 0 || position == 0 {
                integer = group(position).to_string();
            }
        } else {
            integer.push_str(&format!("{:04}", group(position)));
        }
    }
    let mut fraction = String::new();
    let mut position = -1;
    while fraction.len() < scale {
        fraction.push_str(&format!("{:04}", group(position)));
        position -= 1;
    }
    fraction.truncate(scale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if scale == 0 {
        format!("{sign}{integer}")
    } else {
        format!("{sign}{integer}.{fraction}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(digits: &[u16], weight: i16, sign: u16, scale: u16) -> Vec<u8> {
        let mut raw = Vec::new();
        for word in [digits.len() as u16, weight as u16, sign, scale]
            .into_iter()
            .chain(digits.iter().copied())
        {
            raw.extend_from_slice(&word.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numerics_are_read_from_postgres_binary_form() {
        let cases: [(&[u16], i16, u16, u16, &str); 7] = [
            (&[12, 3400], 0, 0, 2, "12.34"),
            (&[1, 2345, 6789], 1, 0x4000, 3, "-12345.678"),
            (&[], 0, 0, 0, "0"),
            (&[5], -1, 0, 4, "0.0005"),
            (&[1], 2, 0, 0, "100000000"),
            (&[42], 0, 0, 0, "42"),
            (&[], 0, 0xC000, 0, "NaN"),
        ];
        for (digits, weight, sign, scale, expected) in cases {
            assert_eq!(
                numeric_text(&numeric(digits, weight, sign, scale)).unwrap(),
                expected
            );
        }
        assert!(numeric_text(&[0, 1]).is_err());
    }

    #[test]
    fn uuids_are_written_as_text() {
        assert_eq!(
            uuid_text([0x12; 16]),
            "12121212-1212-1212-1212-121212121212"
        );
    }
}
