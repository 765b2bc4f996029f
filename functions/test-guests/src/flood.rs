//! Test-only guest: writes to stdout without end, past any output limit.
use std::io::Write;
fn main() {
    let block = [b'x'; 64 * 1024];
    let mut out = std::io::stdout().lock();
    loop {
        if out.write_all(&block).is_err() {
            // The host refused more output; exit non-zero like a real program.
            std::process::exit(74);
        }
    }
}
