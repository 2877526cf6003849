//! Per-image outcome strings: the digits [`EvalRecord::outcomes`](super::EvalRecord::outcomes)
//! and `ood_outcomes` hold, encoded and decoded.

use crate::error::{Error, Result};

/// Per-image outcome levels as one digit each ([`EvalRecord::outcomes`](super::EvalRecord::outcomes)).
pub fn encode_levels(levels: &[u8]) -> String {
    levels.iter().map(|&l| char::from(b'0' + l.min(9))).collect()
}

/// Per-image booleans as `0`/`1`.
pub fn encode_bools(v: &[bool]) -> String {
    v.iter().map(|&b| if b { '1' } else { '0' }).collect()
}

/// The digits of an outcome string; `what` names it in errors.
pub fn decode_digits(s: &str, what: &str) -> Result<Vec<u8>> {
    s.bytes()
        .enumerate()
        .map(|(i, b)| {
            b.is_ascii_digit()
                .then(|| b - b'0')
                .ok_or_else(|| Error::invalid(what, format!("digits only (position {i})"), char::from(b)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_strings_round_trip() {
        let levels = [0u8, 1, 2, 5, 3];
        assert_eq!(encode_levels(&levels), "01253");
        assert_eq!(decode_digits("01253", "o").unwrap(), levels);
        assert_eq!(encode_bools(&[true, false, true]), "101");
        let e = decode_digits("01x", "outcomes").unwrap_err().to_string();
        assert!(e.contains("outcomes") && e.contains("position 2"), "{e}");
    }
}
