//! Distributed lock: Dapr's lock API (alpha), over HTTP
//! (`POST /v1.0-alpha1/lock/{store}`, `POST /v1.0-alpha1/unlock/{store}`:
//! [`api`]) and gRPC (`TryLockAlpha1`, `UnlockAlpha1`), both on
//! [`Sidecar::try_lock`] and [`Sidecar::unlock`].
//!
//! A lock is a resource id held by one owner (a string the caller makes
//! up, per request) until it unlocks it or its `expiryInSeconds` pass.
//! Trying a lock held by anyone, its owner included, does not get it (the
//! lock is not reentrant, as Dapr's Redis lock is not); unlocking says
//! whether it was released, did not exist, or belongs to another owner.
//!
//! Each backend is a module implementing [`LockStore`], opened by its Dapr
//! type in [`open`]: `lock.redis` ([`redis`]). As in daprd, a resource id
//! is stored as `lock||<app-id>||<resource-id>`, so that two apps' locks of
//! one name do not meet; the component's `keyPrefix` metadata changes the
//! middle part: `appid` (the default), `name` (the component's name),
//! `none` (no middle part) or any other text (that text).

pub mod api;
pub mod redis;

use std::collections::HashMap;
use std::time::Duration;

use crate::Sidecar;
use crate::components::Component;
use crate::error::DaprError;

/// The separator of a lock key's parts (which a resource id may not hold).
const SEPARATOR: &str = "||";

/// What unlocking did, with the numbers Dapr's API gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockStatus {
    /// The lock was the owner's and is released.
    Success = 0,
    /// No one holds the lock (it was never taken, released, or expired).
    LockDoesNotExist = 1,
    /// Another owner holds it; it stays held.
    LockBelongsToOthers = 2,
}

/// A lock backend failed (the answer is `ERR_TRY_LOCK` or `ERR_UNLOCK`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LockError(pub String);

/// One lock backend.
#[async_trait::async_trait]
pub trait LockStore: Send + Sync {
    /// Takes `key` for `owner` for `expiry`, unless anyone holds it;
    /// whether it was taken.
    async fn try_lock(&self, key: &str, owner: &str, expiry: Duration) -> Result<bool, LockError>;
    /// Releases `key` if `owner` holds it.
    async fn unlock(&self, key: &str, owner: &str) -> Result<UnlockStatus, LockError>;
}

/// A lock component, opened.
pub struct LockComponent {
    store: Box<dyn LockStore>,
    /// The middle part of its keys (`keyPrefix`), if any.
    key_prefix: Option<String>,
}

/// The lock component types this sidecar serves.
pub const LOCK_TYPES: &[&str] = &["lock.redis"];

/// Opens the lock component `component` (of a type in [`LOCK_TYPES`]) for
/// `app_id`.
pub async fn open(component: &Component, app_id: &str) -> Result<LockComponent, String> {
    let properties: HashMap<String, String> = component.properties();
    let strategy = properties
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("keyPrefix"))
        .map(|(_, value)| value.to_ascii_lowercase())
        .unwrap_or_else(|| "appid".into());
    let key_prefix = match strategy.as_str() {
        "appid" => Some(app_id.to_string()),
        "name" => Some(component.metadata.name.clone()),
        "none" => None,
        other if other.contains(SEPARATOR) => {
            return Err(format!("keyPrefix `{other}` cannot contain `{SEPARATOR}`"));
        }
        other => Some(other.to_string()),
    };
    let store: Box<dyn LockStore> = match component.spec.component_type.as_str() {
        "lock.redis" => Box::new(redis::RedisLock::open(&properties).await?),
        other => {
            return Err(format!(
                "unsupported type `{other}`; supported: {}",
                LOCK_TYPES.join(", ")
            ));
        }
    };
    Ok(LockComponent { store, key_prefix })
}

impl LockComponent {
    /// The key `resource_id` is stored under, as daprd makes it.
    fn key(&self, resource_id: &str) -> Result<String, String> {
        if resource_id.contains(SEPARATOR) {
            return Err(format!(
                "input key/keyPrefix '{resource_id}' can't contain '{SEPARATOR}'"
            ));
        }
        Ok(match &self.key_prefix {
            Some(prefix) => format!("lock{SEPARATOR}{prefix}{SEPARATOR}{resource_id}"),
            None => format!("lock{SEPARATOR}{resource_id}"),
        })
    }
}

/// A call of either lock RPC, as either API received it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockRequest {
    /// The resource to lock.
    #[serde(alias = "resource_id")]
    pub resource_id: String,
    /// Who holds or releases it.
    #[serde(alias = "lock_owner")]
    pub lock_owner: String,
    /// How long the lock holds (try-lock only).
    #[serde(alias = "expiry_in_seconds", deserialize_with = "int32")]
    pub expiry_in_seconds: i32,
}

/// An `int32` as protojson reads one: a number, or a number in a string.
fn int32<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    use serde::Deserialize;
    use serde::de::Error;
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Number(n) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| D::Error::custom(format!("{n} is not an int32"))),
        serde_json::Value::String(text) => text
            .parse()
            .map_err(|_| D::Error::custom(format!("{text:?} is not an int32"))),
        other => Err(D::Error::custom(format!("{other} is not an int32"))),
    }
}

impl Sidecar {
    /// The lock component `store_name`, once the request names a resource
    /// and an owner (daprd checks in this order).
    fn lock_store(
        &self,
        store_name: &str,
        request: &LockRequest,
    ) -> Result<&LockComponent, DaprError> {
        if self.locks.is_empty() {
            return Err(DaprError::LockStoresNotConfigured);
        }
        if request.resource_id.is_empty() {
            return Err(DaprError::LockRequest(format!(
                "ResourceId is empty in lock store {store_name}"
            )));
        }
        if request.lock_owner.is_empty() {
            return Err(DaprError::LockRequest(format!(
                "LockOwner is empty in lock store {store_name}"
            )));
        }
        self.locks
            .get(store_name)
            .ok_or_else(|| DaprError::LockStoreNotFound(store_name.to_string()))
    }

    /// Tries to take the lock `request` names: whether it was taken.
    pub(crate) async fn try_lock(
        &self,
        store_name: &str,
        request: &LockRequest,
    ) -> Result<bool, DaprError> {
        if request.expiry_in_seconds <= 0 {
            return Err(DaprError::LockRequest(format!(
                "ExpiryInSeconds is not positive in lock store {store_name}"
            )));
        }
        let component = self.lock_store(store_name, request)?;
        let key = component
            .key(&request.resource_id)
            .map_err(DaprError::TryLock)?;
        let expiry = Duration::from_secs(request.expiry_in_seconds.unsigned_abs().into());
        component
            .store
            .try_lock(&key, &request.lock_owner, expiry)
            .await
            .map_err(|e| DaprError::TryLock(e.to_string()))
    }

    /// Releases the lock `request` names, if its owner holds it.
    pub(crate) async fn unlock(
        &self,
        store_name: &str,
        request: &LockRequest,
    ) -> Result<UnlockStatus, DaprError> {
        let component = self.lock_store(store_name, request)?;
        let key = component
            .key(&request.resource_id)
            .map_err(DaprError::Unlock)?;
        component
            .store
            .unlock(&key, &request.lock_owner)
            .await
            .map_err(|e| DaprError::Unlock(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    #[async_trait::async_trait]
    impl LockStore for Nothing {
        async fn try_lock(&self, _: &str, _: &str, _: Duration) -> Result<bool, LockError> {
            Ok(false)
        }
        async fn unlock(&self, _: &str, _: &str) -> Result<UnlockStatus, LockError> {
            Ok(UnlockStatus::LockDoesNotExist)
        }
    }

    #[test]
    fn keys_are_made_as_daprd_makes_them() {
        let with = |key_prefix: Option<&str>| LockComponent {
            store: Box::new(Nothing),
            key_prefix: key_prefix.map(str::to_string),
        };
        assert_eq!(
            with(Some("orders")).key("o-1").unwrap(),
            "lock||orders||o-1"
        );
        assert_eq!(with(None).key("o-1").unwrap(), "lock||o-1");
        let err = with(None).key("a||b").unwrap_err();
        assert!(err.contains("can't contain '||'"), "{err}");
    }
}
