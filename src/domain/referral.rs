//! Referral codes: short, unambiguous, URL-safe; carried as `start_param=ref_<code>`.

use rand::Rng;

const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
pub const CODE_LEN: usize = 8;

pub fn new_code() -> String {
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The referral code in a Mini App `start_param`, if it is one of ours.
pub fn code_from_start_param(start_param: &str) -> Option<&str> {
    let code = start_param.strip_prefix("ref_")?;
    let plausible = code.len() == CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b));
    plausible.then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_recognised_in_start_params() {
        let code = new_code();
        assert_eq!(code.len(), CODE_LEN);
        assert_eq!(
            code_from_start_param(&format!("ref_{code}")),
            Some(code.as_str())
        );
        assert_eq!(code_from_start_param(&code), None);
        assert_eq!(code_from_start_param("ref_UPPER123"), None);
        assert_eq!(code_from_start_param("ref_"), None);
    }
}
