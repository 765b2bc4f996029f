//! Test-only guest: prints the file named by its first argument, then
//! tries to write beside it and to list `/`, and says what happened, so
//! tests can see what a function's read-only directories let it do.
fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: read-file PATH");
        std::process::exit(1);
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(1);
        }
    }
    let write = match std::fs::write(format!("{path}.new"), b"x") {
        Ok(()) => "allowed",
        Err(_) => "denied",
    };
    let root = match std::fs::read_dir("/") {
        Ok(_) => "allowed",
        Err(_) => "denied",
    };
    println!("\nwrite={write} list-root={root}");
}
