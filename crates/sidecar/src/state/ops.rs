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
fn given_etag(etag: Option<String>) -> Option<String> {
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

    /// A delete as the store takes it: the key prefixed with the app id,
    /// an empty etag dropped.
    fn stored_delete(&self, mut delete: DeleteRequest) -> Result<DeleteRequest, DaprError> {
        delete.key = self.state_key(&delete.key)?;
        delete.etag = given_etag(delete.etag);
        Ok(delete)
    }

    /// [`Sidecar::stored_delete`] for any operation.
    fn stored(&self, operation: Operation) -> Result<Operation, DaprError> {
        Ok(match operation {
            Operation::Upsert(mut set) => {
                set.key = self.state_key(&set.key)?;
                set.etag = given_etag(set.etag);
                Operation::Upsert(set)
            }
            Operation::Delete(delete) => Operation::Delete(self.stored_delete(delete)?),
        })
    }

    /// Runs `call` on the store `store_name`, recorded as daprd records
    /// the building block's `operation` (`dapr_component_state_*`).
    async fn measured<T, E>(
        &self,
        store_name: &str,
        operation: &str,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = std::time::Instant::now();
        let result = call.await;
        self.metrics
            .record_state(store_name, operation, result.is_ok(), started.elapsed());
        result
    }

    /// Applies `operations` (keys as the client named them) all or none,
    /// recorded as `operation`; a backend failure becomes `backend_error`.
    async fn apply(
        &self,
        store_name: &str,
        operation: &str,
        operations: Vec<Operation>,
        backend_error: impl FnOnce(String) -> DaprError,
    ) -> Result<(), DaprError> {
        let store = self.state_store(store_name)?;
        let operations = operations
            .into_iter()
            .map(|operation| self.stored(operation))
            .collect::<Result<Vec<_>, _>>()?;
        let result = self
            .measured(store_name, operation, store.transact(operations))
            .await;
        result.map_err(|e| match e {
            StoreError::Backend(reason) => backend_error(reason),
            other => write_error(store_name, other),
        })
    }

    /// Reads one key; `None` when it is missing or expired.
    pub(crate) async fn read_state(
        &self,
        store_name: &str,
        key: &str,
    ) -> Result<Option<StateItem>, DaprError> {
        let store = self.state_store(store_name)?;
        let key_in_store = self.state_key(key)?;
        self.measured(store_name, "get", store.get(&key_in_store))
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
        let read = async {
            let mut entries = Vec::with_capacity(keys.len());
            for key in keys {
                let outcome = match self.state_key(&key) {
                    Ok(full) => store.get(&full).await.map_err(|e| e.to_string()),
                    Err(err) => Err(err.to_string()),
                };
                entries.push(BulkEntry { key, outcome });
            }
            // Recorded as failed when any key failed.
            if entries.iter().all(|entry| entry.outcome.is_ok()) {
                Ok(entries)
            } else {
                Err(entries)
            }
        };
        Ok(self
            .measured(store_name, "bulk_get", read)
            .await
            .unwrap_or_else(|entries| entries))
    }

    /// Writes every key (as the client named it), all or none.
    pub(crate) async fn write_state(
        &self,
        store_name: &str,
        writes: Vec<SetRequest>,
    ) -> Result<(), DaprError> {
        let operations = writes.into_iter().map(Operation::Upsert).collect();
        self.apply(store_name, "set", operations, |reason| {
            DaprError::StateSave {
                store: store_name.to_string(),
                reason,
            }
        })
        .await
    }

    /// Deletes one key (a missing key is no error).
    pub(crate) async fn remove_state(
        &self,
        store_name: &str,
        removal: DeleteRequest,
    ) -> Result<(), DaprError> {
        let store = self.state_store(store_name)?;
        let key = removal.key.clone();
        let removal = self.stored_delete(removal)?;
        self.measured(store_name, "delete", store.delete(removal))
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
        removals: Vec<DeleteRequest>,
    ) -> Result<(), DaprError> {
        let operations = removals.into_iter().map(Operation::Delete).collect();
        self.apply(
            store_name,
            "bulk_delete",
            operations,
            DaprError::StateTransaction,
        )
        .await
    }

    /// Applies every operation, all or none.
    pub(crate) async fn transact_state(
        &self,
        store_name: &str,
        operations: Vec<Operation>,
    ) -> Result<(), DaprError> {
        self.apply(
            store_name,
            "transaction",
            operations,
            DaprError::StateTransaction,
        )
        .await
    }
}
