//! Test-only guest: calls WASI-NN with pointers outside its memory, as a
//! buggy or hostile guest might. The host must answer with an error, never
//! crash, and keep serving.

#[link(wasm_import_module = "wasi_ephemeral_nn")]
unsafe extern "C" {
    fn load_by_name(name: *const u8, name_len: u32, graph: *mut u32) -> u32;
}

fn main() {
    let mut graph = 0u32;
    // A name that runs past the end of linear memory.
    let errno = unsafe { load_by_name(0xFFFF_FF00usize as *const u8, 0x1000, &mut graph) };
    println!("load_by_name returned {errno}");
}
