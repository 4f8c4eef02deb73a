//! FLUX's T5 tokenizer: the folder's `tokenizer_2/tokenizer.json` (a SentencePiece Unigram with
//! its Precompiled normalizer), run by Hugging Face's `tokenizers`, the library that wrote it and
//! that transformers' T5TokenizerFast runs. transformers 5 rebuilds the pipeline around the
//! file's vocabulary whatever the file says (only the Precompiled normalizer kept, whitespace
//! split then Metaspace, `$A </s>`); so do we, so that a transformers-4-era file (the one
//! FLUX.1-schnell ships) splits spaces, tabs and newlines as a validator's transformers 5 does.
//! Truncated and padded as FluxPipeline asks: `max_length` tokens, the last one `</s>`, padded
//! with `<pad>`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
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
        let text = std::fs::read_to_string(path).map_err(|e| load(e.to_string()))?;
        let file: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| load(e.to_string()))?;
        let rebuilt = as_transformers_5(file).map_err(|e| load(e.to_string()))?;
        let mut inner: Tokenizer = rebuilt
            .to_string()
            .parse()
            .map_err(|e: tokenizers::Error| load(e.to_string()))?;
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
        i64::try_from(self.inner.get_vocab_size(true))
            .unwrap_or(i64::MAX)
            .saturating_sub(1)
    }
}

/// A tokenizer file that is not a T5 (SentencePiece Unigram) one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotT5 {
    #[error("not a Unigram (SentencePiece) model")]
    NotUnigram,
    #[error("no </s> in the vocabulary")]
    NoEos,
}

/// transformers 5's `T5Tokenizer` pipeline around the file's Unigram vocabulary: the file's
/// Precompiled normalizer only, whitespace split then Metaspace (`▁`, prepended, split), and
/// `$A </s>`.
pub(crate) fn as_transformers_5(mut file: Value) -> Result<Value, NotT5> {
    if file["model"]["type"] != "Unigram" {
        return Err(NotT5::NotUnigram);
    }
    let normalizer = match &file["normalizer"] {
        n if n["type"] == "Precompiled" => n.clone(),
        n if n["type"] == "Sequence" => n["normalizers"]
            .as_array()
            .and_then(|all| all.iter().find(|x| x["type"] == "Precompiled"))
            .cloned()
            .unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let eos = file["model"]["vocab"]
        .as_array()
        .and_then(|v| v.iter().position(|p| p[0] == "</s>"))
        .ok_or(NotT5::NoEos)?;
    let metaspace = json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                           "split": true});
    file["model"]["unk_id"] = json!(2);
    file["model"]["byte_fallback"] = json!(false);
    file["normalizer"] = normalizer;
    file["pre_tokenizer"] = json!({"type": "Sequence",
                                   "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace]});
    file["post_processor"] = json!({
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "</s>", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 0}},
                 {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "special_tokens": {"</s>": {"id": "</s>", "ids": [eos], "tokens": ["</s>"]}}
    });
    file["decoder"] = metaspace;
    file["truncation"] = Value::Null;
    file["padding"] = Value::Null;
    Ok(file)
}
