//! The on-disk cache of precompiled modules and components, so each is
//! compiled once.
//!
//! An artifact is stored as `<dir>/<key>.cwasm`, where `key` is the SHA-256 of
//! the engine's compatibility hash (its configuration, target and wasmtime
//! version) followed by the wasm bytes. Changing either the module or the
//! engine therefore misses the cache instead of loading a stale artifact.
//! Artifacts are written to a temporary file and renamed into place, so a
//! crash or a concurrent writer never leaves a half-written artifact behind.
//!
//! Loading an artifact maps native code into the process, so the cache
//! directory must be writable only by the user who runs dapr-wasm.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

/// Whether a module came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A cached artifact was loaded; nothing was compiled.
    Hit,
    /// The module was compiled and the artifact stored.
    Miss,
    /// The module was compiled; there is no cache (or it could not be written).
    Uncached,
}

/// A directory of precompiled artifacts for one engine configuration.
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
    engine_digest: [u8; 32],
}

/// Feeds everything `Hash` writes into SHA-256, giving a digest that is
/// stable across processes (unlike `DefaultHasher`).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0 // unused: the digest is read with `finalize`
    }
}

impl ModuleCache {
    /// A cache in `dir` (created on first store) for modules of `engine`.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ModuleCache {
            dir: dir.into(),
            engine_digest: hasher.0.finalize().into(),
        }
    }

    /// The directory artifacts are stored in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The artifact path for `wasm`.
    pub fn artifact_path(&self, wasm: &[u8]) -> PathBuf {
        let mut sha = Sha256::new();
        sha.update(self.engine_digest);
        sha.update(wasm);
        self.dir
            .join(format!("{}.cwasm", hex::encode(sha.finalize())))
    }

    /// Loads the module for `wasm` from the cache, or compiles and stores it.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Module, CacheOutcome)> {
        self.load_or_compile_with(
            wasm,
            // SAFETY (both): the artifact was written by `store` for this
            // exact engine configuration (the key covers it) or just made by
            // this engine, and wasmtime checks the header's compatibility
            // again before it maps the code.
            |path| unsafe { Module::deserialize_file(engine, path) },
            || engine.precompile_module(wasm),
            |artifact| unsafe { Module::deserialize(engine, artifact) },
        )
    }

    /// Loads the component for `wasm` (a component-model binary) from the
    /// cache, or compiles and stores it.
    pub fn load_or_compile_component(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        self.load_or_compile_with(
            wasm,
            // SAFETY: as for modules, above.
            |path| unsafe { Component::deserialize_file(engine, path) },
            || engine.precompile_component(wasm),
            |artifact| unsafe { Component::deserialize(engine, artifact) },
        )
    }

    fn load_or_compile_with<T>(
        &self,
        wasm: &[u8],
        load: impl FnOnce(&Path) -> wasmtime::Result<T>,
        compile: impl FnOnce() -> wasmtime::Result<Vec<u8>>,
        deserialize: impl FnOnce(&[u8]) -> wasmtime::Result<T>,
    ) -> wasmtime::Result<(T, CacheOutcome)> {
        let path = self.artifact_path(wasm);
        if path.exists() {
            match load(&path) {
                Ok(loaded) => return Ok((loaded, CacheOutcome::Hit)),
                Err(err) => tracing::warn!(
                    path = %path.display(),
                    error = %err,
                    "ignoring unusable cached artifact; recompiling"
                ),
            }
        }
        let artifact = compile()?;
        let loaded = deserialize(&artifact)?;
        let outcome = match self.store(&path, &artifact) {
            Ok(()) => CacheOutcome::Miss,
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), error = %err, "cannot write the module cache");
                CacheOutcome::Uncached
            }
        };
        Ok((loaded, outcome))
    }

    fn store(&self, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!(
            "tmp-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&tmp, artifact)?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}
