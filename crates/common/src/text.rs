//! Text a peer sent, kept or sent back only in part: a reason, a message or a name is capped
//! where it enters, so a megabyte of it costs nothing downstream (state files, status lines,
//! the console).

/// At most `chars` characters of `text`; a longer text keeps its first `chars` and says how long
/// it was.
pub fn clip(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_keeps_its_head_and_says_its_length() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééééé", 2), "éé… (10 bytes)");
        let big = "x".repeat(4 << 20);
        assert!(clip(&big, 64).len() < 100);
    }
}
