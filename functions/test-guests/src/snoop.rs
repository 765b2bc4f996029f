//! Test-only guest: tries to reach files, environment variables and the
//! network. Each attempt that succeeds is printed; the host must deny all.
fn main() {
    let mut leaks = Vec::new();
    for path in ["/etc/passwd", "/", ".", "/proc/self/environ"] {
        if std::fs::read_dir(path).is_ok() || std::fs::read(path).is_ok() {
            leaks.push(format!("file:{path}"));
        }
    }
    if std::fs::write("leak.txt", b"x").is_ok() {
        leaks.push("file-write".to_string());
    }
    if let Some((k, _)) = std::env::vars().next() {
        leaks.push(format!("env:{k}"));
    }
    if std::net::TcpStream::connect("127.0.0.1:9").is_ok() {
        leaks.push("net:tcp".to_string());
    }
    if leaks.is_empty() {
        println!("sealed");
    } else {
        println!("leaked {}", leaks.join(","));
        std::process::exit(1);
    }
}
