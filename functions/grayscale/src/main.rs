//! WASI entry point of the `grayscale` function.
//!
//! Reads the whole of stdin, writes the grayscale image to stdout. On failure
//! it writes a one-line reason to stderr and exits with the code from
//! [`grayscale::Error::exit_code`] (1 bad input, 2 unsupported, 3 too large).

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut input = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("could not read stdin: {err}");
        return ExitCode::from(1);
    }
    match grayscale::grayscale(&input, &grayscale::Limits::default()) {
        Ok((output, _format)) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(err) = stdout.write_all(&output).and_then(|()| stdout.flush()) {
                eprintln!("could not write stdout: {err}");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1))
        }
    }
}
