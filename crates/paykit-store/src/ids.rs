//! Identifiers and secrets: a type prefix and random base32 characters.

/// Lower-case RFC 4648 base32 alphabet without padding: unambiguous in URLs, logs and QR
/// codes, and 32 symbols so that a random byte maps without bias.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// `len` random base32 characters (5 bits each) from the operating system's generator.
pub fn random_base32(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the operating system's random generator is available");
    bytes.iter().map(|b| ALPHABET[usize::from(b & 31)] as char).collect()
}

/// An object id such as `mch_2v4k…`: 20 characters, 100 random bits.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_base32(20))
}

/// An API secret: 40 characters, 200 random bits.
pub fn new_secret() -> String {
    random_base32(40)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = super::new_id("mch");
        let b = super::new_id("mch");
        assert!(a.starts_with("mch_") && a.len() == 24);
        assert_ne!(a, b);
        assert_eq!(super::new_secret().len(), 40);
    }
}
