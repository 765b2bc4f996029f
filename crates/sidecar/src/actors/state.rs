//! Actor state: reads and transactions on the actor state store, through
//! the state building block ([`crate::state::ops`]), which prefixes the app
//! id, so keys are daprd's `<appId>||<type>||<id>||<key>`.

use std::collections::HashMap;

use crate::Sidecar;
use crate::error::DaprError;
use crate::state::{Concurrency, DeleteRequest, Operation, SetRequest, StateItem};

/// One operation of an actor's state transaction.
#[derive(Debug, Clone)]
pub(crate) enum ActorStateOperation {
    /// Writes `value` (over HTTP the JSON text of `value`, over gRPC the
    /// bytes), with `ttlInSeconds` from the metadata.
    Upsert {
        key: String,
        value: Vec<u8>,
        metadata: HashMap<String, String>,
    },
    Delete {
        key: String,
    },
}

/// The key of an actor's state, as the state building block takes it.
fn state_key(actor_type: &str, actor_id: &str, key: &str) -> Result<String, DaprError> {
    if key.is_empty() {
        return Err(DaprError::ActorStateTransaction("missing key".into()));
    }
    Ok(format!("{actor_type}||{actor_id}||{key}"))
}

impl Sidecar {
    /// The actor state store's name.
    fn actor_state_store(&self) -> Result<&str, DaprError> {
        self.actors
            .state_store
            .as_deref()
            .ok_or(DaprError::ActorRuntimeNotFound)
    }

    /// Reads one key of an actor's state (`None`: missing).
    pub(crate) async fn get_actor_state(
        &self,
        actor_type: &str,
        actor_id: &str,
        key: &str,
    ) -> Result<Option<StateItem>, DaprError> {
        let store = self.actor_state_store()?;
        let key = format!("{actor_type}||{actor_id}||{key}");
        self.read_state(store, &key)
            .await
            .map_err(|e| DaprError::ActorStateGet(e.to_string()))
    }

    /// Applies `operations` to an actor's state, all or none. The actor
    /// must be active on this sidecar, as daprd requires.
    pub(crate) async fn transact_actor_state(
        &self,
        actor_type: &str,
        actor_id: &str,
        operations: Vec<ActorStateOperation>,
    ) -> Result<(), DaprError> {
        let store = self.actor_state_store()?;
        let key = (actor_type.to_string(), actor_id.to_string());
        if !self.actors.is_active(&key) {
            return Err(DaprError::ActorInstanceMissing);
        }
        let mut stored = Vec::with_capacity(operations.len());
        for operation in operations {
            stored.push(match operation {
                ActorStateOperation::Upsert {
                    key,
                    value,
                    metadata,
                } => {
                    let ttl_seconds = match metadata.get("ttlInSeconds") {
                        Some(ttl) => crate::state::ops::parse_ttl(ttl)
                            .map_err(|e| DaprError::ActorStateTransaction(e.to_string()))?,
                        None => None,
                    };
                    Operation::Upsert(SetRequest {
                        key: state_key(actor_type, actor_id, &key)?,
                        value,
                        etag: None,
                        concurrency: Concurrency::LastWrite,
                        ttl_seconds,
                    })
                }
                ActorStateOperation::Delete { key } => Operation::Delete(DeleteRequest {
                    key: state_key(actor_type, actor_id, &key)?,
                    etag: None,
                    concurrency: Concurrency::LastWrite,
                }),
            });
        }
        self.transact_state(store, stored)
            .await
            .map_err(|e| DaprError::ActorStateTransaction(e.to_string()))
    }
}
