//! CLIP's BPE tokenizer as transformers 5 runs it for Stable Diffusion: NFC, whitespace runs
//! to one space, lower case, CLIP's word split, byte-level BPE with OpenAI's vocabulary
//! (shipped by `instant-clip-tokenizer`), then `<|startoftext|> … <|endoftext|>`, truncated
//! and padded to 77 tokens.

use instant_clip_tokenizer::{Token, Tokenizer};
use regex::Regex;
use unicode_normalization::UnicodeNormalization;

pub const MAX_LENGTH: usize = 77;
pub const START_OF_TEXT: i64 = 49406;
pub const END_OF_TEXT: i64 = 49407;

pub struct ClipTokenizer {
    bpe: Tokenizer,
    words: Regex,
    whitespace: Regex,
    pad: i64,
}

impl ClipTokenizer {
    /// `pad` is what fills the sequence after `<|endoftext|>`: itself for SD 1.5, `!` (0) for
    /// SDXL's second tokenizer.
    pub fn new(pad: i64) -> Self {
        Self {
            bpe: Tokenizer::new(),
            words: Regex::new(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
                .expect("a valid regex"),
            whitespace: Regex::new(r"\s+").expect("a valid regex"),
            pad,
        }
    }

    /// Token ids of `text` without the start/end markers.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let mut ids = Vec::new();
        // The special markers are matched in the raw text, before normalisation.
        let mut rest = text;
        while !rest.is_empty() {
            let next = ["<|startoftext|>", "<|endoftext|>"]
                .iter()
                .filter_map(|m| rest.find(m).map(|i| (i, *m)))
                .min();
            let (plain, special) = match next {
                Some((i, m)) => (&rest[..i], Some(m)),
                None => (rest, None),
            };
            self.encode_plain(plain, &mut ids);
            match special {
                Some(m) => {
                    ids.push(if m == "<|startoftext|>" {
                        START_OF_TEXT
                    } else {
                        END_OF_TEXT
                    });
                    rest = &rest[plain.len() + m.len()..];
                }
                None => rest = "",
            }
        }
        ids
    }

    fn encode_plain(&self, text: &str, ids: &mut Vec<i64>) {
        let normalized: String = text.nfc().collect();
        let normalized = self.whitespace.replace_all(&normalized, " ").to_lowercase();
        let mut tokens: Vec<Token> = Vec::new();
        for word in self.words.find_iter(&normalized) {
            // Each word on its own, so the crate's own splitting can never differ from ours.
            self.bpe.encode(word.as_str(), &mut tokens);
        }
        ids.extend(tokens.into_iter().map(|t| i64::from(t.to_u16())));
    }

    /// `padding="max_length", max_length=77, truncation=True`, as the SD pipeline calls it.
    pub fn encode_padded(&self, text: &str) -> Vec<i64> {
        let mut ids = vec![START_OF_TEXT];
        ids.extend(self.encode(text).into_iter().take(MAX_LENGTH - 2));
        ids.push(END_OF_TEXT);
        ids.resize(MAX_LENGTH, self.pad);
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_prompt() {
        let t = ClipTokenizer::new(END_OF_TEXT);
        assert_eq!(
            t.encode("a photo of a cat"),
            vec![320, 1125, 539, 320, 2368]
        );
        let padded = t.encode_padded("a photo of a cat");
        assert_eq!(&padded[..7], &[49406, 320, 1125, 539, 320, 2368, 49407]);
        assert_eq!(padded.len(), 77);
        assert!(padded[7..].iter().all(|&p| p == END_OF_TEXT));
    }

    #[test]
    fn long_prompts_are_truncated_keeping_the_end_marker() {
        let t = ClipTokenizer::new(0);
        let ids = t.encode_padded(&"cat ".repeat(200));
        assert_eq!(ids.len(), 77);
        assert_eq!(ids[76], END_OF_TEXT);
        assert_eq!(ids[0], START_OF_TEXT);
    }

    #[test]
    fn special_markers_in_text() {
        let t = ClipTokenizer::new(END_OF_TEXT);
        assert_eq!(
            t.encode("cat<|endoftext|>cat"),
            vec![2368, END_OF_TEXT, 2368]
        );
    }
}
