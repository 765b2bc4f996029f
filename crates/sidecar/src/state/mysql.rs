//! `state.mysql`: state in a MySQL or MariaDB table, as Dapr's MySQL store
//! keeps it, with the semantics of [`super`].
//!
//! Table `<schemaName>.<tableName>(id VARCHAR(255) PRIMARY KEY, value
//! LONGBLOB, etag BIGINT, expires_ms BIGINT NULL)`, keys compared byte for
//! byte. As in [`super::postgres`], etag checks are part of the writes
//! (`UPDATE ... WHERE etag = ?`; first-write is an `INSERT` that a
//! duplicate key refuses), a request's operations run in one transaction,
//! and each write purges expired rows through an index on `expires_ms`.
//!
//! Metadata, as daprd reads it:
//! - `connectionString` (required): Go's MySQL DSN, as in Dapr's examples
//!   (`root:secret@tcp(127.0.0.1:3306)/?allowNativePasswords=true`;
//!   `unix(/run/mysqld/mysqld.sock)` for a socket), or a `mysql://` URL;
//! - `schemaName` (default `dapr_state_store`): the database, created when
//!   missing;
//! - `tableName` (default `state`);
//! - `maxConns` (default 4 or the number of CPUs, whichever is more) and
//!   `connectionMaxIdleTime` (default 30 minutes), as for PostgreSQL.
//!
//! Calls run on `mysql_async`'s pool; a connection whose call was
//! cancelled mid-statement is cleaned up (its transaction rolled back) by
//! the pool before it serves another.

use std::collections::HashMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Pool, PoolConstraints, PoolOpts, Transaction, TxOpts};

use super::{
    Concurrency, DeleteRequest, Operation, SetRequest, StateItem, StateStore, StoreError,
    max_connections, max_idle_time, new_etag, parse_etag,
};
use crate::unix_millis;

/// MySQL's error for a duplicate key.
const DUPLICATE_KEY: u16 = 1062;

/// A MySQL- or MariaDB-backed [`StateStore`].
pub struct MysqlStore {
    pool: Pool,
    /// `schema.table`, each part checked (letters, digits and `_`).
    table: String,
}

fn backend(err: mysql_async::Error) -> StoreError {
    match err {
        mysql_async::Error::Server(server) => StoreError::Backend(server.message),
        other => StoreError::Backend(other.to_string()),
    }
}

/// A name the store puts in its SQL: letters, digits and `_` only.
fn sql_name(what: &str, name: &str) -> Result<(), StoreError> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "{what} `{name}` must be letters, digits or `_`"
        )))
    }
}

/// The connection options of `connectionString`: a `mysql://` URL, or Go's
/// DSN, `[user[:password]@][tcp(host:port)|unix(path)]/[dbname][?params]`
/// (the params are Go driver settings, not read here).
pub(crate) fn connection_options(text: &str) -> Result<OptsBuilder, String> {
    if text.starts_with("mysql://") || text.starts_with("mariadb://") {
        let url = text.replacen("mariadb://", "mysql://", 1);
        let opts = mysql_async::Opts::from_url(&url).map_err(|e| e.to_string())?;
        return Ok(OptsBuilder::from_opts(opts));
    }
    let slash = text
        .rfind('/')
        .ok_or("a DSN needs a `/` before its database name (`user@tcp(host:3306)/`)")?;
    let (head, tail) = (&text[..slash], &text[slash + 1..]);
    let db_name = tail.split('?').next().unwrap_or_default();
    let (credentials, address) = match head.rfind('@') {
        Some(at) => (Some(&head[..at]), &head[at + 1..]),
        None => (None, head),
    };
    let mut options = OptsBuilder::default();
    if let Some(credentials) = credentials {
        let (user, password) = match credentials.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (credentials, None),
        };
        options = options
            .user(Some(user))
            .pass(password.filter(|p| !p.is_empty()));
    }
    if !db_name.is_empty() {
        options = options.db_name(Some(db_name));
    }
    let inside = |protocol: &str| {
        address
            .strip_prefix(protocol)
            .and_then(|rest| rest.strip_prefix('('))
            .and_then(|rest| rest.strip_suffix(')'))
    };
    if let Some(path) = inside("unix") {
        options = options.socket(Some(path));
    } else if address.is_empty() || address == "tcp" {
        options = options.ip_or_hostname("127.0.0.1").tcp_port(3306);
    } else if let Some(host_port) = inside("tcp") {
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse()
                    .map_err(|_| format!("`{port}` is not a port number"))?,
            ),
            None => (host_port, 3306),
        };
        options = options.ip_or_hostname(host).tcp_port(port);
    } else {
        return Err(format!(
            "`{address}` is not an address a DSN gives (tcp(host:port) or unix(path))"
        ));
    }
    Ok(options)
}

impl MysqlStore {
    /// Connects, creates the schema, the table and its index if needed.
    pub async fn open(properties: &HashMap<String, String>) -> Result<Self, StoreError> {
        let get = |key: &str| {
            properties
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let connection_string = get("connectionString")
            .ok_or_else(|| StoreError::Backend("metadata `connectionString` is required".into()))?;
        let options = connection_options(connection_string)
            .map_err(|e| StoreError::Backend(format!("metadata `connectionString`: {e}")))?;
        let schema = get("schemaName").unwrap_or("dapr_state_store");
        let table = get("tableName").unwrap_or("state");
        sql_name("schemaName", schema)?;
        sql_name("tableName", table)?;
        let max_connections = max_connections(properties)?;
        let max_idle_time = max_idle_time(properties)?;
        let constraints = PoolConstraints::new(0, max_connections)
            .ok_or_else(|| StoreError::Backend("maxConns must be 1 or more".into()))?;
        let pool = Pool::new(
            options.pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    .with_inactive_connection_ttl(max_idle_time)
                    .with_ttl_check_interval(max_idle_time.min(Duration::from_secs(60))),
            ),
        );
        let store = MysqlStore {
            pool,
            table: format!("{schema}.{table}"),
        };
        let mut conn = store.connection().await?;
        conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {schema}"))
            .await
            .map_err(backend)?;
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {schema}.{table} (
                 id         VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY,
                 value      LONGBLOB NOT NULL,
                 etag       BIGINT NOT NULL,
                 expires_ms BIGINT NULL,
                 INDEX {table}_expires (expires_ms)
             )"
        ))
        .await
        .map_err(backend)?;
        Ok(store)
    }

    /// A connection from the pool, within 5 s.
    async fn connection(&self) -> Result<Conn, StoreError> {
        tokio::time::timeout(Duration::from_secs(5), self.pool.get_conn())
            .await
            .map_err(|_| StoreError::Backend("no answer from MySQL within 5s".into()))?
            .map_err(backend)
    }

    async fn apply_set(
        &self,
        tx: &mut Transaction<'_>,
        request: &SetRequest,
    ) -> Result<(), StoreError> {
        let table = &self.table;
        let now = unix_millis();
        let expires = request.expires_at_millis(now);
        let etag = request.etag.as_deref().map(parse_etag).transpose()?;
        let key = request.key.as_str();
        let value = request.value.as_slice();
        let written = match (etag, request.concurrency) {
            (Some(expected), _) => {
                tx.exec_drop(
                    format!(
                        "UPDATE {table} SET value = ?, etag = ?, expires_ms = ?
                         WHERE id = ? AND etag = ? AND (expires_ms IS NULL OR expires_ms > ?)"
                    ),
                    (value, new_etag(), expires, key, expected, now),
                )
                .await
                .map_err(backend)?;
                tx.affected_rows()
            }
            (None, Concurrency::FirstWrite) => {
                tx.exec_drop(
                    format!("DELETE FROM {table} WHERE id = ? AND expires_ms <= ?"),
                    (key, now),
                )
                .await
                .map_err(backend)?;
                let inserted = tx
                    .exec_drop(
                        format!(
                            "INSERT INTO {table} (id, value, etag, expires_ms) VALUES (?, ?, ?, ?)"
                        ),
                        (key, value, new_etag(), expires),
                    )
                    .await;
                match inserted {
                    Ok(()) => tx.affected_rows(),
                    Err(mysql_async::Error::Server(e)) if e.code == DUPLICATE_KEY => 0,
                    Err(e) => return Err(backend(e)),
                }
            }
            (None, Concurrency::LastWrite) => {
                tx.exec_drop(
                    format!(
                        "INSERT INTO {table} (id, value, etag, expires_ms) VALUES (?, ?, ?, ?)
                         ON DUPLICATE KEY UPDATE value = VALUES(value), etag = VALUES(etag),
                             expires_ms = VALUES(expires_ms)"
                    ),
                    (key, value, new_etag(), expires),
                )
                .await
                .map_err(backend)?;
                tx.affected_rows()
            }
        };
        if written == 0 {
            return Err(StoreError::EtagMismatch(format!(
                "the etag does not match the current version of key {} (or first-write found it)",
                request.key
            )));
        }
        Ok(())
    }

    async fn apply_delete(
        &self,
        tx: &mut Transaction<'_>,
        request: &DeleteRequest,
    ) -> Result<(), StoreError> {
        let table = &self.table;
        match request.etag.as_deref().map(parse_etag).transpose()? {
            Some(expected) => {
                tx.exec_drop(
                    format!(
                        "DELETE FROM {table} WHERE id = ? AND etag = ?
                         AND (expires_ms IS NULL OR expires_ms > ?)"
                    ),
                    (request.key.as_str(), expected, unix_millis()),
                )
                .await
                .map_err(backend)?;
                if tx.affected_rows() == 0 {
                    return Err(StoreError::EtagMismatch(format!(
                        "the etag does not match the current version of key {}",
                        request.key
                    )));
                }
            }
            None => {
                tx.exec_drop(
                    format!("DELETE FROM {table} WHERE id = ?"),
                    (request.key.as_str(),),
                )
                .await
                .map_err(backend)?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl StateStore for MysqlStore {
    async fn get(&self, key: &str) -> Result<Option<StateItem>, StoreError> {
        let mut conn = self.connection().await?;
        let row: Option<(Vec<u8>, i64, Option<i64>)> = conn
            .exec_first(
                format!(
                    "SELECT value, etag, expires_ms FROM {}
                     WHERE id = ? AND (expires_ms IS NULL OR expires_ms > ?)",
                    self.table
                ),
                (key, unix_millis()),
            )
            .await
            .map_err(backend)?;
        Ok(row.map(|(value, etag, expires_ms)| StateItem {
            value,
            etag: etag.to_string(),
            expires_ms,
        }))
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(backend)?;
        for operation in &operations {
            // An early return drops `tx`, which rolls it back.
            match operation {
                Operation::Upsert(request) => self.apply_set(&mut tx, request).await?,
                Operation::Delete(request) => self.apply_delete(&mut tx, request).await?,
            }
        }
        tx.exec_drop(
            format!(
                "DELETE FROM {} WHERE expires_ms IS NOT NULL AND expires_ms <= ?",
                self.table
            ),
            (unix_millis(),),
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(text: &str) -> mysql_async::Opts {
        connection_options(text).unwrap().into()
    }

    #[test]
    fn go_dsns_are_read_as_daprs_examples_write_them() {
        let dsn = options("root:s3cret@tcp(db.local:3307)/shop?allowNativePasswords=true");
        assert_eq!(dsn.user(), Some("root"));
        assert_eq!(dsn.pass(), Some("s3cret"));
        assert_eq!(dsn.ip_or_hostname(), "db.local");
        assert_eq!(dsn.tcp_port(), 3307);
        assert_eq!(dsn.db_name(), Some("shop"));

        let dsn = options("root:@tcp(127.0.0.1:3306)/");
        assert_eq!(dsn.user(), Some("root"));
        assert_eq!(dsn.pass(), None);
        assert_eq!(dsn.db_name(), None);

        let dsn = options("dapr@unix(/run/mysqld/mysqld.sock)/");
        assert_eq!(dsn.socket(), Some("/run/mysqld/mysqld.sock"));

        let url = options("mysql://app:pw@127.0.0.1:3306/shop");
        assert_eq!((url.user(), url.db_name()), (Some("app"), Some("shop")));

        for bad in ["root@tcp(127.0.0.1:x)/", "no-slash", "root@udp(1.2.3.4)/"] {
            assert!(connection_options(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_in_the_sql_are_checked() {
        assert!(sql_name("tableName", "state_1").is_ok());
        for bad in ["", "state; DROP TABLE x", "a.b", "`x`"] {
            assert!(sql_name("tableName", bad).is_err(), "{bad}");
        }
    }
}
