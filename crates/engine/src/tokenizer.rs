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
    bpe: Bpe,
    words: Regex,
    whitespace: Regex,
    /// Added tokens matched in the raw text (the special ones), then those matched in the
    /// normalised text; longest first among matches at the same place.
    raw_tokens: Vec<(String, i64)>,
    normalized_tokens: Vec<(String, i64)>,
    pad: i64,
}

/// The byte-level BPE: OpenAI's vocabulary built in, or a folder's own files.
enum Bpe {
    Builtin(Tokenizer),
    Files(super::tokenizer_files::VocabBpe),
}

impl ClipTokenizer {
    /// The tokenizer a diffusers folder's `dir` holds; None when it holds none (the built-in
    /// vocabulary then). Refused when one of its ids is past the text encoder's `vocab_size`
    /// embeddings (it would index out of the table).
    pub fn from_folder(
        dir: &std::path::Path,
        vocab_size: i64,
    ) -> Result<Option<Self>, super::tokenizer_files::TokenizerError> {
        use super::tokenizer_files::{TokenizerError, TokenizerFiles};
        let Some(files) = TokenizerFiles::read(dir)? else {
            return Ok(None);
        };
        if files.max_id() >= vocab_size {
            return Err(TokenizerError::Invalid {
                path: dir.to_path_buf(),
                reason: format!(
                    "token id {} is past the text encoder's {vocab_size} embeddings",
                    files.max_id()
                ),
            });
        }
        Ok(Some(Self::from_files(files)))
    }

    /// `pad` is what fills the sequence after `<|endoftext|>`: itself for SD 1.5, `!` (0) for
    /// SDXL's second tokenizer, whose repositories make `!` a special token (so `!!` is two).
    pub fn new(pad: i64) -> Self {
        let mut special = vec![
            ("<|startoftext|>".to_string(), START_OF_TEXT),
            ("<|endoftext|>".to_string(), END_OF_TEXT),
        ];
        if pad == 0 {
            special.push(("!".into(), 0));
        }
        Self::with(Bpe::Builtin(Tokenizer::new()), special, Vec::new(), pad)
    }

    /// The tokenizer a folder's `tokenizer/` (or `tokenizer_2/`) files describe.
    pub fn from_files(files: super::tokenizer_files::TokenizerFiles) -> Self {
        Self::with(
            Bpe::Files(files.bpe),
            files.raw_tokens,
            files.normalized_tokens,
            files.pad,
        )
    }

    fn with(
        bpe: Bpe,
        raw_tokens: Vec<(String, i64)>,
        normalized_tokens: Vec<(String, i64)>,
        pad: i64,
    ) -> Self {
        Self {
            bpe,
            words: Regex::new(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
                .expect("a valid regex"),
            whitespace: Regex::new(r"\s+").expect("a valid regex"),
            raw_tokens,
            normalized_tokens,
            pad,
        }
    }

    /// Token ids of `text` without the start/end markers.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let mut ids = Vec::new();
        // Special tokens are matched in the raw text, before normalisation.
        split_added(text, &self.raw_tokens, &mut ids, |plain, ids| {
            let normalized: String = plain.nfc().collect();
            let normalized = self.whitespace.replace_all(&normalized, " ").to_lowercase();
            split_added(&normalized, &self.normalized_tokens, ids, |piece, ids| {
                self.encode_plain(piece, ids)
            });
        });
        ids
    }

    fn encode_plain(&self, normalized: &str, ids: &mut Vec<i64>) {
        for word in self.words.find_iter(normalized) {
            match &self.bpe {
                Bpe::Builtin(bpe) => {
                    // Each word on its own, so the crate's own splitting can never differ.
                    let mut tokens: Vec<Token> = Vec::new();
                    bpe.encode(word.as_str(), &mut tokens);
                    ids.extend(tokens.into_iter().map(|t| i64::from(t.to_u16())));
                }
                Bpe::Files(bpe) => bpe.encode_word(word.as_str(), ids),
            }
        }
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

/// Cuts `text` at every added token (leftmost, then longest), handing the text between to
/// `plain` and pushing the tokens' ids.
fn split_added(
    text: &str,
    tokens: &[(String, i64)],
    ids: &mut Vec<i64>,
    mut plain: impl FnMut(&str, &mut Vec<i64>),
) {
    // Each token's next occurrence is remembered and searched for again only once the cursor
    // has passed it, so every token scans the text once: linear in the text, however many
    // special tokens a prompt repeats.
    let tokens: Vec<&(String, i64)> = tokens.iter().filter(|(t, _)| !t.is_empty()).collect();
    let mut next: Vec<Option<usize>> = tokens.iter().map(|(t, _)| text.find(t.as_str())).collect();
    let mut at = 0;
    while at < text.len() {
        for (k, (t, _)) in tokens.iter().enumerate() {
            if let Some(p) = next[k]
                && p < at
            {
                next[k] = text[at..].find(t.as_str()).map(|i| i + at);
            }
        }
        let best = tokens
            .iter()
            .zip(&next)
            .filter_map(|((t, id), p)| p.map(|p| (p, std::cmp::Reverse(t.len()), *id)))
            .min();
        match best {
            Some((p, std::cmp::Reverse(len), id)) => {
                plain(&text[at..p], ids);
                ids.push(id);
                at = p + len;
            }
            None => {
                plain(&text[at..], ids);
                at = text.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutting_at_added_tokens_is_linear_in_the_text() {
        let tokens = vec![
            ("<|endoftext|>".to_string(), 1),
            ("<|startoftext|>".to_string(), 2),
            ("never".to_string(), 3),
        ];
        let text = "<|endoftext|>".repeat(200_000) + "tail";
        let started = std::time::Instant::now();
        let mut ids = Vec::new();
        let mut plain_bytes = 0;
        split_added(&text, &tokens, &mut ids, |t, _| plain_bytes += t.len());
        assert_eq!(ids.len(), 200_000);
        assert_eq!(plain_bytes, 4);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // Leftmost, then longest, as before.
        let mut ids = Vec::new();
        let tokens = vec![
            ("ab".to_string(), 1),
            ("abc".to_string(), 2),
            ("bc".to_string(), 3),
        ];
        split_added("xabcbc", &tokens, &mut ids, |_, _| {});
        assert_eq!(ids, vec![2, 3]);
    }

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
    fn sdxl_second_tokenizer_splits_its_pad_token() {
        let t = ClipTokenizer::new(0);
        let plain = ClipTokenizer::new(END_OF_TEXT);
        assert_eq!(t.encode("car!!"), vec![1615, 0, 0]);
        assert_ne!(
            plain.encode("car!!"),
            t.encode("car!!"),
            "`!!` is one BPE token"
        );
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
