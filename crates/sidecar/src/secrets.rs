//! Dapr's secrets API, on the local secret stores, each read once, at
//! start-up:
//!
//! - `secretstores.local.file`: secrets from a JSON file. Nested objects
//!   are flattened with `nestedSeparator` (default `:`), so `{"db":
//!   {"password": "x"}}` is the secret `db:password`. Arrays are flattened
//!   by index.
//! - `secretstores.local.env`: the sidecar's environment variables, those
//!   that start with `prefix` (if set) named without it. As in daprd,
//!   `APP_API_TOKEN` and every `DAPR_*` variable are never given out, and a
//!   secret that is not there reads as empty rather than as an error.
//!
//! The API:
//! - `GET /v1.0/secrets/{store}/{name}` → `{"<name>": "<value>"}`
//! - `GET /v1.0/secrets/{store}/bulk` → `{"<name>": {"<name>": "<value>"}, ...}`

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::Sidecar;
use crate::components::Component;
use crate::error::DaprError;

/// The secret store types this sidecar loads.
pub const SECRET_STORE_TYPES: &[&str] = &["secretstores.local.env", "secretstores.local.file"];

/// The secrets of one local secret store.
#[derive(Debug, Clone)]
pub struct SecretStore {
    secrets: BTreeMap<String, String>,
    /// A secret that is not there reads as empty (the env store, as
    /// daprd's), not as an error.
    missing_is_empty: bool,
}

impl SecretStore {
    /// Loads the store `component` describes (of a type in
    /// [`SECRET_STORE_TYPES`]).
    pub fn open(component: &Component) -> Result<Self, String> {
        match component.spec.component_type.as_str() {
            "secretstores.local.env" => {
                let prefix = component
                    .properties()
                    .into_iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case("prefix"))
                    .map(|(_, value)| value)
                    .unwrap_or_default();
                Ok(Self::from_env(std::env::vars_os(), &prefix))
            }
            _ => Self::from_file(component),
        }
    }

    /// The env store: each of `vars` named `<prefix><name>`, as `name`,
    /// but `APP_API_TOKEN` and `DAPR_*` (any case) and those that are not
    /// Unicode.
    fn from_env(
        vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
        prefix: &str,
    ) -> Self {
        let allowed = |key: &str| {
            let key = key.to_ascii_uppercase();
            key != "APP_API_TOKEN" && !key.starts_with("DAPR_")
        };
        let secrets = vars
            .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
            .filter(|(key, _)| allowed(key))
            .filter_map(|(key, value)| {
                let name = key.strip_prefix(prefix)?;
                (!name.is_empty()).then(|| (name.to_string(), value))
            })
            .collect();
        SecretStore {
            secrets,
            missing_is_empty: true,
        }
    }

    /// The file store. A relative `secretsFile` is relative to the working
    /// directory.
    fn from_file(component: &Component) -> Result<Self, String> {
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
        Ok(SecretStore {
            secrets,
            missing_is_empty: false,
        })
    }

    /// One secret's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        match self.secrets.get(name) {
            Some(value) => Some(value),
            None if self.missing_is_empty => Some(""),
            None => None,
        }
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
    fn secret_store(&self, name: &str) -> Result<&SecretStore, DaprError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)], prefix: &str) -> SecretStore {
        SecretStore::from_env(vars.iter().map(|(k, v)| (k.into(), v.into())), prefix)
    }

    #[test]
    fn the_env_store_gives_the_prefixed_variables_by_their_names() {
        let store = env(
            &[
                ("SHOP_DB", "postgres://x"),
                ("SHOP_", "no name"),
                ("OTHER", "o"),
            ],
            "SHOP_",
        );
        assert_eq!(store.get("DB"), Some("postgres://x"));
        assert_eq!(
            store.secrets.keys().collect::<Vec<_>>(),
            ["DB"],
            "only the prefixed ones, without the prefix"
        );
        assert_eq!(store.get("OTHER"), Some(""), "missing reads as empty");
    }

    #[test]
    fn the_env_store_never_gives_daprs_own_variables() {
        let store = env(
            &[
                ("DAPR_API_TOKEN", "secret"),
                ("dapr_http_port", "3500"),
                ("APP_API_TOKEN", "secret"),
                ("PATH", "/bin"),
            ],
            "",
        );
        assert_eq!(store.secrets.keys().collect::<Vec<_>>(), ["PATH"]);
        assert_eq!(store.get("DAPR_API_TOKEN"), Some(""));
        assert_eq!(env(&[("DAPR_X", "x")], "DAPR_").get("X"), Some(""));
    }
}
