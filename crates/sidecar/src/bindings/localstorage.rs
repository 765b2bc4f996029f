//! `bindings.localstorage`: files in a folder as an output binding, as
//! Dapr's local storage binding keeps them.
//!
//! Metadata: `rootPath` (required), the folder, made when missing. A
//! relative one is taken from the sidecar's working directory, and symbolic
//! links in it are resolved once, at start-up. It may not be in `/proc`,
//! `/sys`, `/boot` or `/var/run/secrets` (nor `/run/secrets`).
//!
//! Operations, on the request metadata's `fileName`, a path under the
//! folder:
//! - `create` writes the data to it (a new UUID when no name is given;
//!   missing folders are made) and answers `{"fileName": "<path>"}`. As in
//!   daprd, data that is a JSON string is written as the string, and data
//!   that is base64 is decoded first;
//! - `get` answers its content;
//! - `list` answers the paths of every file under it (the whole folder by
//!   default) as a JSON array;
//! - `delete` deletes it (204).
//!
//! A name can never leave the folder ([`secure_join`]): `..` stops at the
//! folder, and a symbolic link inside is followed as if the folder were the
//! file system's root, as daprd (`filepath-securejoin`) does.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;

use super::{BindingRequest, BindingResponse, OutputBinding, invoke_failed};
use crate::error::DaprError;

/// Where daprd refuses to put the folder (and `/run/secrets`, which
/// `/var/run/secrets` is on Linux).
const DISALLOWED_ROOTS: &[&str] = &["/proc", "/sys", "/boot", "/var/run/secrets", "/run/secrets"];

/// How many symbolic links one name may go through, as in
/// `filepath-securejoin`.
const MAX_LINKS: usize = 255;

/// Its operations, in daprd's order.
const OPERATIONS: &[&str] = &["create", "get", "list", "delete"];

/// A `bindings.localstorage` component.
pub struct LocalStorageBinding {
    name: String,
    root: PathBuf,
}

impl LocalStorageBinding {
    /// Checks `rootPath` and makes the folder.
    pub async fn open(
        name: String,
        properties: &HashMap<String, String>,
    ) -> Result<LocalStorageBinding, String> {
        let root = super::property(properties, "rootPath")
            .ok_or("property rootPath must not be empty")?
            .to_string();
        let root = tokio::task::spawn_blocking(move || -> Result<PathBuf, String> {
            let root = root_path(Path::new(&root))?;
            std::fs::create_dir_all(&root).map_err(|e| {
                format!(
                    "unable to create directory specified by 'rootPath' {}: {e}",
                    root.display()
                )
            })?;
            Ok(root)
        })
        .await
        .map_err(|e| format!("checking rootPath failed: {e}"))??;
        Ok(LocalStorageBinding { name, root })
    }

    /// Runs one operation on the file `file_name` (blocking file I/O).
    fn run(
        root: &Path,
        operation: &str,
        file_name: &str,
        data: &[u8],
    ) -> Result<Option<BindingResponse>, String> {
        let (path, relative) = secure_join(root, file_name)
            .map_err(|e| format!("error getting absolute path for file {file_name}: {e}"))?;
        let shown = path.display();
        let answer = |data: Vec<u8>| {
            Some(BindingResponse {
                data: data.into(),
                metadata: HashMap::new(),
            })
        };
        match operation {
            "create" => {
                if let Some(folder) = path.parent() {
                    std::fs::create_dir_all(folder).map_err(|e| {
                        format!("error creating directory {}: {e}", folder.display())
                    })?;
                }
                std::fs::write(&path, content_to_write(data))
                    .map_err(|e| format!("error writing to file {shown}: {e}"))?;
                let created = serde_json::json!({ "fileName": relative });
                Ok(answer(created.to_string().into_bytes()))
            }
            "get" => match std::fs::read(&path) {
                Ok(content) => Ok(answer(content)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err(format!("file not found: {shown}"))
                }
                Err(e) => Err(format!("error opening path {shown}: {e}")),
            },
            "delete" => {
                std::fs::remove_file(&path)
                    .map_err(|e| format!("error deleting file {shown}: {e}"))?;
                Ok(None)
            }
            "list" => {
                let metadata = std::fs::metadata(&path)
                    .map_err(|e| format!("error getting stats for path {shown}: {e}"))?;
                if !metadata.is_dir() {
                    return Err(format!(
                        "unable to list files as the file specified is not a directory: {shown}"
                    ));
                }
                let mut files = Vec::new();
                files_under(&path, &mut files)
                    .map_err(|e| format!("error listing files in the directory {shown}: {e}"))?;
                let listed = serde_json::to_vec(&files).map_err(|e| e.to_string())?;
                Ok(answer(listed))
            }
            other => Err(format!("unsupported operation {other}")),
        }
    }
}

/// What `create` writes for `data`: the string, when it is a JSON string,
/// decoded, when it is base64, as daprd writes it.
fn content_to_write(data: &[u8]) -> Vec<u8> {
    let data = match serde_json::from_slice::<String>(data) {
        Ok(text) => text.into_bytes(),
        Err(_) => data.to_vec(),
    };
    base64::engine::general_purpose::STANDARD
        .decode(&data)
        .unwrap_or(data)
}

/// The paths of the files under `folder`, sorted, in its subfolders too
/// (a symbolic link is listed, not followed).
fn files_under(folder: &Path, files: &mut Vec<String>) -> io::Result<()> {
    let mut entries = std::fs::read_dir(folder)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        if entry.file_type()?.is_dir() {
            files_under(&entry.path(), files)?;
        } else {
            files.push(entry.path().to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// `rootPath` made absolute, the symbolic links in the part that exists
/// resolved, checked against [`DISALLOWED_ROOTS`].
fn root_path(given: &Path) -> Result<PathBuf, String> {
    let absolute = if given.is_absolute() {
        given.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("failed to obtain current working directory: {e}"))?
            .join(given)
    };
    let absolute = lexically_clean(&absolute);
    // The longest part that exists, and what is left after it.
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    loop {
        match std::fs::metadata(existing) {
            Ok(metadata) if metadata.is_dir() => break,
            Ok(_) => return Err("property rootPath represents a file and not a directory".into()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(parent) = existing.parent() else {
                    break;
                };
                missing.push(existing.file_name().unwrap_or_default().to_os_string());
                existing = parent;
            }
            Err(e) => {
                return Err(format!(
                    "error getting stat for path {}: {e}",
                    existing.display()
                ));
            }
        }
    }
    let mut root = std::fs::canonicalize(existing)
        .map_err(|e| format!("failed to evaluate symlinks in rootPath: {e}"))?;
    for part in missing.iter().rev() {
        root.push(part);
    }
    // Before and after its links are resolved (`/var/run` is a link).
    let disallowed = DISALLOWED_ROOTS
        .iter()
        .any(|place| root.starts_with(place) || absolute.starts_with(place));
    if disallowed {
        return Err("property rootPath points to a disallowed location".into());
    }
    Ok(root)
}

/// `path` with its `.` and `..` parts applied (`..` stops at `/`).
fn lexically_clean(path: &Path) -> PathBuf {
    let mut clean = PathBuf::from("/");
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            std::path::Component::Normal(name) => clean.push(name),
            _ => {}
        }
    }
    clean
}

/// The file `name` names under `root`, and its path relative to `root`.
///
/// `name` is read one part at a time against the real folder: `..` goes up
/// a level but never above `root`, and a symbolic link is replaced by its
/// target, read as if `root` were `/` (an absolute target starts again
/// from `root`), so no name, and no link inside the folder, reaches a file
/// outside it.
fn secure_join(root: &Path, name: &str) -> io::Result<(PathBuf, String)> {
    let mut parts: Vec<String> = Vec::new();
    let mut remaining = name.to_string();
    let mut links = 0;
    while !remaining.is_empty() {
        let (part, rest) = match remaining.split_once('/') {
            Some((part, rest)) => (part.to_string(), rest.to_string()),
            None => (std::mem::take(&mut remaining), String::new()),
        };
        remaining = rest;
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        let candidate = parts
            .iter()
            .fold(root.to_path_buf(), |p, q| p.join(q))
            .join(&part);
        let is_link = match std::fs::symlink_metadata(&candidate) {
            Ok(metadata) => metadata.file_type().is_symlink(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if !is_link {
            parts.push(part);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(io::Error::other("too many levels of symbolic links"));
        }
        let target = std::fs::read_link(&candidate)?;
        let target = target.to_string_lossy();
        if target.starts_with('/') {
            parts.clear();
        }
        remaining = format!("{target}/{remaining}");
    }
    let path = parts.iter().fold(root.to_path_buf(), |p, q| p.join(q));
    Ok((path, parts.join("/")))
}

#[async_trait::async_trait]
impl OutputBinding for LocalStorageBinding {
    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    async fn invoke(&self, request: BindingRequest) -> Result<Option<BindingResponse>, DaprError> {
        let mut file_name = request
            .metadata
            .get("fileName")
            .cloned()
            .unwrap_or_default();
        if file_name.is_empty() && request.operation == "create" {
            file_name = crate::ids::new_uuid();
        }
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            LocalStorageBinding::run(&root, &request.operation, &file_name, &request.data)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|result| result)
        .map_err(|reason| invoke_failed(&self.name, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_never_leaves_the_folder() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.join("inner")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("inner/up")).unwrap();
        std::os::unix::fs::symlink("inner", root.join("alias")).unwrap();
        let cases = [
            ("a.txt", "a.txt"),
            ("inner/../b.txt", "b.txt"),
            ("../../etc/passwd", "etc/passwd"),
            ("/etc/passwd", "etc/passwd"),
            ("./inner//c", "inner/c"),
            // An absolute link starts again at the folder.
            (
                "escape/secret",
                &format!("{}/secret", outside.path().display())[1..],
            ),
            // A relative one cannot climb out either.
            ("inner/up/etc/passwd", "etc/passwd"),
            ("alias/d", "inner/d"),
            ("", ""),
        ];
        for (name, expected) in cases {
            let (path, relative) = secure_join(&root, name).unwrap();
            assert_eq!(relative, expected, "{name}");
            assert_eq!(path, root.join(expected), "{name}");
            assert!(path.starts_with(&root), "{name}");
        }
    }

    #[test]
    fn a_link_to_itself_is_an_error_not_a_loop() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("loop", root.path().join("loop")).unwrap();
        let error = secure_join(root.path(), "loop/x").unwrap_err();
        assert_eq!(error.to_string(), "too many levels of symbolic links");
    }

    #[test]
    fn created_data_is_unquoted_and_base64_decoded_as_daprd_writes_it() {
        assert_eq!(content_to_write(br#""hello world""#), b"hello world");
        assert_eq!(content_to_write(br#""aGk=""#), b"hi");
        assert_eq!(content_to_write(b"aGk="), b"hi");
        assert_eq!(content_to_write(br#"{"a":1}"#), br#"{"a":1}"#);
    }

    #[test]
    fn a_root_in_a_system_folder_is_refused() {
        for root in [
            "/proc/x",
            "/sys",
            "/var/run/secrets/kubernetes.io",
            "/boot/../proc",
        ] {
            assert_eq!(
                root_path(Path::new(root)).unwrap_err(),
                "property rootPath points to a disallowed location",
                "{root}"
            );
        }
    }
}
