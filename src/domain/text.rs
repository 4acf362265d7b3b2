//! User text that reaches a model or a page: control characters out, whitespace folded, length
//! capped (in characters, not bytes).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    Empty,
    TooLong { max: usize },
}

/// Zero-width and bidirectional-override characters: invisible, and able to disguise text.
pub fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Control characters become spaces, invisible format characters go, runs of white space fold
/// to one, ends are trimmed.
pub fn clean(input: &str, max_chars: usize) -> Result<String, TextError> {
    let spaced: String = input
        .chars()
        .filter(|c| !is_invisible_format(*c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cleaned = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    if cleaned.is_empty() {
        Err(TextError::Empty)
    } else if cleaned.chars().count() > max_chars {
        Err(TextError::TooLong { max: max_chars })
    } else {
        Ok(cleaned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_go_and_limits_count_characters() {
        assert_eq!(
            clean(" make\tit\u{0}  blue\n\r ", 100),
            Ok("make it blue".into())
        );
        assert_eq!(clean("\u{7}\n ", 100), Err(TextError::Empty));
        assert_eq!(clean("ёжик", 4), Ok("ёжик".into()));
        assert_eq!(clean("ёжики", 4), Err(TextError::TooLong { max: 4 }));
        assert_eq!(clean("a\u{202e}b\u{200b}c", 10), Ok("abc".into()));
    }
}
