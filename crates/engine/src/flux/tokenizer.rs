//! FLUX's T5 tokenizer: the folder's `tokenizer_2/tokenizer.json` (a SentencePiece Unigram with
//! its Precompiled normalizer and Metaspace), read by Hugging Face's `tokenizers`, the library
//! that wrote it and that transformers' T5TokenizerFast runs. Truncated and padded as
//! FluxPipeline asks: `max_length` tokens, the last one `</s>`, padded with `<pad>`.

use std::path::{Path, PathBuf};

use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

#[derive(Debug, thiserror::Error)]
pub enum T5TokenizerError {
    #[error("cannot read the T5 tokenizer {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("cannot tokenize the prompt: {0}")]
    Encode(String),
}

/// The folder files are capped: a real T5 tokenizer.json is about 2.4 MB.
const MAX_FILE_BYTES: u64 = 64 << 20;

pub struct T5Tokenizer {
    inner: Tokenizer,
}

impl T5Tokenizer {
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self, T5TokenizerError> {
        let load = |reason: String| T5TokenizerError::Load {
            path: path.to_path_buf(),
            reason,
        };
        let size = std::fs::metadata(path)
            .map_err(|e| load(e.to_string()))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(load(format!("{size} bytes is above {MAX_FILE_BYTES}")));
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| load(e.to_string()))?;
        let pad_id = inner
            .token_to_id("<pad>")
            .ok_or_else(|| load("no <pad> token".into()))?;
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| load(e.to_string()))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_length),
            pad_id,
            pad_token: "<pad>".into(),
            ..PaddingParams::default()
        }));
        Ok(Self { inner })
    }

    /// Exactly `max_length` ids.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, T5TokenizerError> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| T5TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().iter().map(|&id| i64::from(id)).collect())
    }

    /// The largest id it can produce (checked against the encoder's embedding table).
    pub fn max_id(&self) -> i64 {
        i64::from(self.inner.get_vocab_size(true) as u32).saturating_sub(1)
    }
}
