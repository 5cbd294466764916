//! Identifiers and secrets: a type prefix and base32 characters.

/// Lower-case RFC 4648 base32 alphabet without padding: unambiguous in URLs, logs and QR
/// codes, and 32 symbols so that a random byte maps without bias.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// `len` random base32 characters (5 bits each) from the operating system's generator.
pub fn random_base32(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the operating system's random generator is available");
    bytes.iter().map(|b| ALPHABET[usize::from(b & 31)] as char).collect()
}

/// The same 32 symbols in ASCII order, so that a number written with them sorts as text
/// (in byte order and in every collation) as it does as a number.
const SORTABLE: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// An object id such as `ord_2v4k…`: 20 characters, of which the first 9 are the creation
/// time in milliseconds (45 bits, until the year 3084) and the other 11 are random (55
/// bits: two ids of one millisecond become likely to meet only past about 10^8 of them).
///
/// Why time first: every table keys its rows by these ids, and an index of random keys
/// has each insert land on a different page. A commit then writes a page per row and
/// index to SQLite's WAL (or PostgreSQL's), where ids made in the same instant share their
/// pages. The random part keeps ids unguessable.
pub fn new_id(prefix: &str) -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut id = String::with_capacity(prefix.len() + 21);
    id.push_str(prefix);
    id.push('_');
    id.push_str(&sortable_millis(millis));
    id.push_str(&random_base32(11));
    id
}

/// An id that lets whoever holds it take something (a red packet's share): 20 characters,
/// all random (100 bits), since a time-first id's 55 random bits leave less margin against
/// guessing than a bearer capability wants.
pub fn new_unguessable_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_base32(20))
}

/// `millis` as 9 [`SORTABLE`] symbols, most significant first.
fn sortable_millis(millis: u64) -> String {
    (0..9).rev().map(|i| SORTABLE[((millis >> (5 * i)) & 31) as usize] as char).collect()
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

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        // Across each symbol's step (the digits' end at 5 → 6 and the alphabet's at 25 → 26
        // among them) and a carry into every position.
        let now = 1_796_000_000_000u64;
        let steps = (0..32).chain((1..9).map(|i| (1u64 << (5 * i)) - 1)).chain([now, now + 31]);
        for m in steps {
            let (a, b) = (super::sortable_millis(m), super::sortable_millis(m + 1));
            assert!(a < b, "{m}: {a} then {b}");
        }
        let (a, b) = (super::new_id("ord"), super::new_id("ord"));
        assert!(a < b || a[..13] == b[..13], "{a} then {b}");
        assert!(a[4..].bytes().all(|c| super::ALPHABET.contains(&c)), "{a}");
    }
}
