//! Fresh identifiers: CloudEvent ids, etags (trace and span ids are
//! OpenTelemetry's: [`service_kit::trace`]).
//!
//! They must be unique, not secret, so they come from a fast per-thread
//! generator (`fastrand`, seeded by the standard library's per-process
//! random keys) rather than a system call each: ids are made on every
//! publish and save, and a `getrandom` call each was measurable.

/// `N` random bytes.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    fastrand::fill(&mut bytes);
    bytes
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// A random UUID (version 4), as daprd's event ids are: written straight
/// into its 36 bytes (two ids per published event made this a visible
/// share of a bulk publish when it went through `format!`).
pub(crate) fn new_uuid() -> String {
    let mut bytes = random_bytes::<16>();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = [0u8; 36];
    let mut at = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text[at] = b'-';
            at += 1;
        }
        text[at] = HEX_DIGITS[usize::from(b >> 4)];
        text[at + 1] = HEX_DIGITS[usize::from(b & 0x0f)];
        at += 2;
    }
    text.iter().map(|&b| char::from(b)).collect()
}

/// A random positive 63-bit number.
pub(crate) fn new_positive_i63() -> i64 {
    (u64::from_le_bytes(random_bytes::<8>()) >> 1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_formats_and_differ() {
        let uuid = new_uuid();
        assert!(
            uuid.bytes()
                .all(|b| b == b'-' || (b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        );
        let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
        assert_eq!(&uuid[14..15], "4", "version 4: {uuid}");
        assert!(
            matches!(&uuid[19..20], "8" | "9" | "a" | "b"),
            "RFC 4122 variant: {uuid}"
        );
        assert_ne!(new_uuid(), uuid);
        assert!(new_positive_i63() >= 0);
    }
}
