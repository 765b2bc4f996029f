//! Test-only guest: grows its memory until the host's limit stops it.
fn main() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch the memory so nothing is optimised away.
        let chunk = vec![1u8; 16 << 20];
        hoard.push(std::hint::black_box(chunk));
    }
}
