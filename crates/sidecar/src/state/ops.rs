//! The state building block, once: the HTTP API ([`super::api`]) and the
//! gRPC API ([`crate::grpc`]) translate their wire formats into these
//! calls, so a rule or a limit lands in both at once (daprd's
//! `pkg/api/universal` is the model).
//!
//! Keys are stored as `<appId>||<key>`, as daprd does. Values are stored as
//! the bytes the client sent (over HTTP, the JSON text of `value`).

use std::sync::Arc;

use super::{Concurrency, DeleteRequest, Operation, SetRequest, StateItem, StateStore, StoreError};
use crate::Sidecar;
use crate::error::DaprError;

/// One key to write, as the client named it.
#[derive(Debug, Clone)]
pub(crate) struct StateWrite {
    pub key: String,
    pub value: Vec<u8>,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    pub ttl_seconds: Option<u64>,
}

/// One key to delete, as the client named it.
#[derive(Debug, Clone)]
pub(crate) struct StateRemoval {
    pub key: String,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
}

/// One step of a transaction.
#[derive(Debug, Clone)]
pub(crate) enum TransactionStep {
    Upsert(StateWrite),
    Delete(StateRemoval),
}

/// One key of a bulk read: its item, or why it could not be read.
pub(crate) struct BulkEntry {
    pub key: String,
    pub outcome: Result<Option<StateItem>, String>,
}

/// Dapr's concurrency names (`first-write`, `last-write`; none is
/// last-write).
pub(crate) fn parse_concurrency(name: Option<&str>) -> Result<Concurrency, DaprError> {
    match name {
        None | Some("") | Some("last-write") => Ok(Concurrency::LastWrite),
        Some("first-write") => Ok(Concurrency::FirstWrite),
        Some(other) => Err(DaprError::MalformedRequest(format!(
            "unknown concurrency `{other}`; use first-write or last-write"
        ))),
    }
}

/// The `ttlInSeconds` metadata: a whole number of seconds; -1 (or any
/// negative number) means "never expires", as in Dapr.
pub(crate) fn parse_ttl(text: &str) -> Result<Option<u64>, DaprError> {
    let seconds: i64 = text.trim().parse().map_err(|_| {
        DaprError::MalformedRequest(format!("ttlInSeconds `{text}` is not a number"))
    })?;
    Ok(u64::try_from(seconds).ok())
}

/// An empty etag is no etag.
pub(crate) fn given_etag(etag: Option<String>) -> Option<String> {
    etag.filter(|e| !e.is_empty())
}

/// Maps a store error on a write to Dapr's error.
fn write_error(store: &str, err: StoreError) -> DaprError {
    match err {
        StoreError::EtagMismatch(m) => DaprError::EtagMismatch(m),
        StoreError::EtagInvalid(m) => DaprError::EtagInvalid(m),
        StoreError::Backend(reason) => DaprError::StateSave {
            store: store.to_string(),
            reason,
        },
    }
}

impl Sidecar {
    /// The state store called `name`.
    pub(crate) fn state_store(&self, name: &str) -> Result<Arc<dyn StateStore>, DaprError> {
        if self.stores.is_empty() {
            return Err(DaprError::StateStoresNotConfigured);
        }
        self.stores
            .get(name)
            .cloned()
            .ok_or_else(|| DaprError::StateStoreNotFound(name.to_string()))
    }

    fn state_key(&self, key: &str) -> Result<String, DaprError> {
        if key.is_empty() {
            return Err(DaprError::MalformedRequest("a key is empty".into()));
        }
        Ok(format!("{}||{key}", self.config.app_id))
    }

    fn set_request(&self, write: StateWrite) -> Result<SetRequest, DaprError> {
        Ok(SetRequest {
            key: self.state_key(&write.key)?,
            value: write.value,
            etag: given_etag(write.etag),
            concurrency: write.concurrency,
            ttl_seconds: write.ttl_seconds,
        })
    }

    fn delete_request(&self, removal: StateRemoval) -> Result<DeleteRequest, DaprError> {
        Ok(DeleteRequest {
            key: self.state_key(&removal.key)?,
            etag: given_etag(removal.etag),
            concurrency: removal.concurrency,
        })
    }

    /// Reads one key; `None` when it is missing or expired.
    pub(crate) async fn read_state(
        &self,
        store_name: &str,
        key: &str,
    ) -> Result<Option<StateItem>, DaprError> {
        let store = self.state_store(store_name)?;
        store
            .get(&self.state_key(key)?)
            .await
            .map_err(|e| DaprError::StateGet {
                key: key.to_string(),
                store: store_name.to_string(),
                reason: e.to_string(),
            })
    }

    /// Reads several keys; a key that fails carries its error instead of
    /// failing the others.
    pub(crate) async fn read_state_bulk(
        &self,
        store_name: &str,
        keys: Vec<String>,
    ) -> Result<Vec<BulkEntry>, DaprError> {
        let store = self.state_store(store_name)?;
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            let outcome = match self.state_key(&key) {
                Ok(full) => store.get(&full).await.map_err(|e| e.to_string()),
                Err(err) => Err(err.to_string()),
            };
            entries.push(BulkEntry { key, outcome });
        }
        Ok(entries)
    }

    /// Writes every key, all or none.
    pub(crate) async fn write_state(
        &self,
        store_name: &str,
        writes: Vec<StateWrite>,
    ) -> Result<(), DaprError> {
        let store = self.state_store(store_name)?;
        let operations = writes
            .into_iter()
            .map(|write| self.set_request(write).map(Operation::Upsert))
            .collect::<Result<Vec<_>, _>>()?;
        store
            .transact(operations)
            .await
            .map_err(|e| write_error(store_name, e))
    }

    /// Deletes one key (a missing key is no error).
    pub(crate) async fn remove_state(
        &self,
        store_name: &str,
        removal: StateRemoval,
    ) -> Result<(), DaprError> {
        let store = self.state_store(store_name)?;
        let key = removal.key.clone();
        store
            .delete(self.delete_request(removal)?)
            .await
            .map_err(|e| match e {
                StoreError::Backend(reason) => DaprError::StateDelete { key, reason },
                other => write_error(store_name, other),
            })
    }

    /// Deletes every key, all or none.
    pub(crate) async fn remove_state_bulk(
        &self,
        store_name: &str,
        removals: Vec<StateRemoval>,
    ) -> Result<(), DaprError> {
        let steps = removals.into_iter().map(TransactionStep::Delete).collect();
        self.transact_state(store_name, steps).await
    }

    /// Applies every step, all or none.
    pub(crate) async fn transact_state(
        &self,
        store_name: &str,
        steps: Vec<TransactionStep>,
    ) -> Result<(), DaprError> {
        let store = self.state_store(store_name)?;
        let operations = steps
            .into_iter()
            .map(|step| match step {
                TransactionStep::Upsert(write) => self.set_request(write).map(Operation::Upsert),
                TransactionStep::Delete(removal) => {
                    self.delete_request(removal).map(Operation::Delete)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        store.transact(operations).await.map_err(|e| match e {
            StoreError::Backend(reason) => DaprError::StateTransaction(reason),
            other => write_error(store_name, other),
        })
    }
}
