//! Test-only guest: copies stdin to stdout, writes its argv and environment
//! size to stderr, so tests can see exactly what a call receives.
use std::io::{Read, Write};
fn main() {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .expect("read stdin");
    std::io::stdout().write_all(&input).expect("write stdout");
    let args: Vec<String> = std::env::args().collect();
    eprint!("args={} env={}", args.join(" "), std::env::vars().count());
}
