//! A direct `fd_write` for stdout and stderr, and the capped buffers it
//! writes into.
//!
//! wasmtime-wasi's preview1 `fd_write` passes every write through its
//! preview2 stream layer in 4 KiB chunks, each a fresh allocation and an
//! async write-and-flush: about 0.45 ms for a 400 KB image. Functions write
//! their whole result to stdout, so this module shadows `fd_write` with a
//! version that copies the guest's buffers straight into the call's
//! [`CappedBuffer`]s. For the guest it is the same standard WASI call.
//!
//! Calls get no files or sockets, so file descriptors 1 and 2 are the only
//! writable ones; any other gets `EBADF`, as it would from wasmtime-wasi.

use wasmtime::{Caller, Linker};

/// WASI preview1 errno values used here (from `typenames.witx`).
mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const FBIG: i32 = 22;
}

/// An in-memory output stream that refuses to grow past its limit.
#[derive(Debug, Default)]
pub(crate) struct CappedBuffer {
    bytes: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl CappedBuffer {
    pub(crate) fn new(limit: usize) -> Self {
        CappedBuffer {
            bytes: Vec::new(),
            limit,
            overflowed: false,
        }
    }

    /// Appends `data`, or refuses all of it (and remembers) if it would pass
    /// the limit.
    fn write(&mut self, data: &[u8]) -> bool {
        if data.len() > self.limit - self.bytes.len() {
            self.overflowed = true;
            return false;
        }
        self.bytes.extend_from_slice(data);
        true
    }

    /// Whether a write was refused because of the limit.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Access to a call's stdout and stderr buffers from its store data.
pub(crate) trait CallStdio {
    /// The buffer behind file descriptor 1 (stdout) or 2 (stderr).
    fn stdio(&mut self, fd: i32) -> Option<&mut CappedBuffer>;
}

/// Replaces `wasi_snapshot_preview1::fd_write` in `linker` (which must
/// already hold the WASI functions) with the direct version.
pub(crate) fn shadow_fd_write<T: CallStdio + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "fd_write",
        |mut caller: Caller<'_, T>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32| -> i32 {
            let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
                return errno::FAULT;
            };
            let (memory, state) = memory.data_and_store_mut(&mut caller);
            let Some(buffer) = state.stdio(fd) else {
                return errno::BADF;
            };
            match write_iovecs(memory, buffer, iovs as u32, iovs_len as u32) {
                Ok(written) => {
                    match slice_at(memory, nwritten as u32, 4) {
                        Some(out) => out.copy_from_slice(&written.to_le_bytes()),
                        None => return errno::FAULT,
                    }
                    errno::SUCCESS
                }
                Err(code) => code,
            }
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Copies the guest's iovec list (`len` pairs of u32 pointer and length at
/// `iovs`) into `buffer`; returns the bytes written or an errno.
fn write_iovecs(
    memory: &mut [u8],
    buffer: &mut CappedBuffer,
    iovs: u32,
    len: u32,
) -> Result<u32, i32> {
    let table = slice_at(memory, iovs, len.checked_mul(8).ok_or(errno::FAULT)?)
        .ok_or(errno::FAULT)?
        .to_vec();
    let mut written: u32 = 0;
    for iovec in table.chunks_exact(8) {
        let ptr = u32::from_le_bytes([iovec[0], iovec[1], iovec[2], iovec[3]]);
        let size = u32::from_le_bytes([iovec[4], iovec[5], iovec[6], iovec[7]]);
        let data = slice_at(memory, ptr, size).ok_or(errno::FAULT)?;
        if !buffer.write(data) {
            // Report what was written so far, like a short write; a guest
            // that writes again gets the error.
            return if written > 0 {
                Ok(written)
            } else {
                Err(errno::FBIG)
            };
        }
        written = written.checked_add(size).ok_or(errno::FAULT)?;
    }
    Ok(written)
}

fn slice_at(memory: &mut [u8], ptr: u32, len: u32) -> Option<&mut [u8]> {
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    memory.get_mut(start..end)
}
