//! Test-only guest: loops forever, so the host's deadline must stop it.
fn main() {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
