//! `secretstores.local.file`: secrets from a JSON file, and Dapr's secrets
//! API.
//!
//! - `GET /v1.0/secrets/{store}/{name}` → `{"<name>": "<value>"}`
//! - `GET /v1.0/secrets/{store}/bulk` → `{"<name>": {"<name>": "<value>"}, ...}`
//!
//! Nested objects are flattened with `nestedSeparator` (default `:`), so
//! `{"db": {"password": "x"}}` is the secret `db:password`. Arrays are
//! flattened by index. The file is read once, at start-up.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::Sidecar;
use crate::components::Component;
use crate::error::DaprError;

/// Secrets loaded from one JSON file.
#[derive(Debug, Clone)]
pub struct LocalFileStore {
    secrets: BTreeMap<String, String>,
}

impl LocalFileStore {
    /// Loads the store a `secretstores.local.file` component describes.
    /// A relative `secretsFile` is relative to the working directory.
    pub fn open(component: &Component) -> Result<Self, String> {
        let properties = component.properties();
        let path = properties
            .get("secretsFile")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .ok_or("metadata `secretsFile` is required")?;
        let separator = properties
            .get("nestedSeparator")
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| ":".into());
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        let mut secrets = BTreeMap::new();
        flatten("", &json, &separator, &mut secrets);
        Ok(LocalFileStore { secrets })
    }

    /// One secret's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.secrets.get(name).map(String::as_str)
    }
}

fn flatten(prefix: &str, value: &Value, separator: &str, out: &mut BTreeMap<String, String>) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}{separator}{key}")
        }
    };
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                flatten(&join(key), child, separator, out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                flatten(&join(&index.to_string()), child, separator, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        Value::Null => {
            out.insert(prefix.to_string(), String::new());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

impl Sidecar {
    fn secret_store(&self, name: &str) -> Result<&LocalFileStore, DaprError> {
        if self.secret_stores.is_empty() {
            return Err(DaprError::SecretStoresNotConfigured);
        }
        self.secret_stores
            .get(name)
            .ok_or_else(|| DaprError::SecretStoreNotFound(name.to_string()))
    }

    /// One secret of `store_name` (the secrets building block, shared by
    /// the HTTP and gRPC APIs).
    pub(crate) fn read_secret(&self, store_name: &str, name: &str) -> Result<&str, DaprError> {
        let store = self.secret_store(store_name)?;
        let started = std::time::Instant::now();
        let secret = store.get(name);
        self.metrics
            .record_secret(store_name, "get", secret.is_some(), started.elapsed());
        secret.ok_or_else(|| DaprError::SecretGet {
            key: name.to_string(),
            store: store_name.to_string(),
            reason: "secret not found".into(),
        })
    }

    /// Every secret of `store_name`, by name.
    pub(crate) fn read_secrets(
        &self,
        store_name: &str,
    ) -> Result<&BTreeMap<String, String>, DaprError> {
        let store = self.secret_store(store_name)?;
        self.metrics
            .record_secret(store_name, "bulk_get", true, std::time::Duration::ZERO);
        Ok(&store.secrets)
    }
}

pub(crate) async fn secret_get(
    State(sidecar): State<Arc<Sidecar>>,
    Path((store_name, name)): Path<(String, String)>,
) -> Result<Json<Value>, DaprError> {
    let value = sidecar.read_secret(&store_name, &name)?;
    Ok(Json(json!({ name: value })))
}

pub(crate) async fn secret_bulk(
    State(sidecar): State<Arc<Sidecar>>,
    Path(store_name): Path<String>,
) -> Result<Json<HashMap<String, HashMap<String, String>>>, DaprError> {
    Ok(Json(
        sidecar
            .read_secrets(&store_name)?
            .iter()
            .map(|(k, v)| (k.clone(), HashMap::from([(k.clone(), v.clone())])))
            .collect(),
    ))
}
