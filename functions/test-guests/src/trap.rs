//! Test-only guest: executes `unreachable`, a trap the host must contain.
fn main() {
    // Read the input first so the host's stdin pipe is exercised.
    let mut input = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut input);
    std::process::abort();
}
