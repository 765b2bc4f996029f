//! Dapr component YAML files (`apiVersion: dapr.io/v1alpha1`,
//! `kind: Component`), read from the `--resources-path` folders.
//!
//! ```yaml
//! apiVersion: dapr.io/v1alpha1
//! kind: Component
//! metadata:
//!   name: statestore
//! spec:
//!   type: state.sqlite
//!   version: v1
//!   metadata:
//!   - name: connectionString
//!     value: "data.db"
//! scopes: [web-port]     # optional: only these app ids load it
//! ```
//!
//! A file may hold several documents separated by `---`; documents of other
//! kinds are skipped here (Subscriptions are read by
//! [`crate::pubsub::subscriptions`], HTTPEndpoints by
//! [`crate::http_endpoints`]).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

/// One component as written in YAML.
#[derive(Debug, Clone, Deserialize)]
pub struct Component {
    /// The document's `kind`: only `Component` documents are used.
    #[serde(default, rename = "kind")]
    pub document_kind: String,
    /// `metadata.name`.
    pub metadata: ComponentMetadata,
    /// `spec`.
    pub spec: ComponentSpec,
    /// App ids that may use it; empty means all.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `metadata` of a component (Kubernetes object metadata; only the name
/// is used).
#[derive(Debug, Clone, Deserialize)]
pub struct ComponentMetadata {
    /// The component's name, as used in API paths.
    pub name: String,
}

/// `spec` of a component.
#[derive(Debug, Clone, Deserialize)]
pub struct ComponentSpec {
    /// e.g. `state.sqlite`, `secretstores.local.file`.
    #[serde(rename = "type")]
    pub component_type: String,
    /// e.g. `v1`.
    #[serde(default = "default_version")]
    pub version: String,
    /// Name/value pairs.
    #[serde(default)]
    pub metadata: Vec<MetadataItem>,
}

fn default_version() -> String {
    "v1".into()
}

/// One `spec.metadata` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct MetadataItem {
    /// The field's name.
    pub name: String,
    /// Its value (numbers and booleans are read as text).
    #[serde(default)]
    pub value: serde_yaml::Value,
}

impl Component {
    /// The metadata as a name → text map.
    pub fn properties(&self) -> HashMap<String, String> {
        self.spec
            .metadata
            .iter()
            .map(|item| {
                let text = yaml_text(&item.value);
                (item.name.clone(), text)
            })
            .collect()
    }

    /// Whether `app_id` may use this component.
    pub fn in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app_id)
    }
}

/// Why components could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// A folder or file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A document is not a valid component.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Reads every `*.yaml`/`*.yml` file in `folders` and returns the
/// components in scope for `app_id`, sorted by file name.
pub fn load(folders: &[PathBuf], app_id: &str) -> Result<Vec<Component>, ComponentError> {
    let mut components = Vec::new();
    for (path, document) in documents_of_kind(folders, "Component")? {
        let component: Component =
            serde_yaml::from_value(document).map_err(|e| ComponentError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if component.in_scope(app_id) {
            components.push(component);
        }
    }
    Ok(components)
}

/// Every YAML document of `kind` (`Component`, `Subscription`, ...) in the
/// `*.yaml`/`*.yml` files of `folders`, with its file, in file-name order.
pub fn documents_of_kind(
    folders: &[PathBuf],
    kind: &str,
) -> Result<Vec<(PathBuf, serde_yaml::Value)>, ComponentError> {
    let mut documents = Vec::new();
    for folder in folders {
        let read_error = |source| ComponentError::Read {
            path: folder.clone(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
            .map_err(read_error)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|source| ComponentError::Read {
                path: file.clone(),
                source,
            })?;
            for document in serde_yaml::Deserializer::from_str(&text) {
                let value = serde_yaml::Value::deserialize(document).map_err(|e| {
                    ComponentError::Invalid {
                        path: file.clone(),
                        reason: e.to_string(),
                    }
                })?;
                if value.get("kind").and_then(|k| k.as_str()) == Some(kind) {
                    documents.push((file.clone(), value));
                }
            }
        }
    }
    Ok(documents)
}

/// A YAML value as the text Dapr would read: strings as they are, null as
/// empty, numbers and booleans as written.
pub fn yaml_text(value: &serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Null => String::new(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}
