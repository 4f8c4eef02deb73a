//! A folder's own tokenizer files, read as transformers 5 reads a `CLIPTokenizer`: either
//! `tokenizer.json` (vocabulary, merges and added tokens in one file, what transformers 5
//! saves) or `vocab.json` + `merges.txt` (what most repositories ship), with the special
//! tokens of `tokenizer_config.json` / `special_tokens_map.json` and `added_tokens.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Tokenizer files are a few megabytes; anything past this is not one.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Byte-level BPE over a vocabulary and ranked merges, CLIP style (`</w>` ends a word).
pub struct VocabBpe {
    vocab: HashMap<String, i64>,
    ranks: HashMap<(String, String), usize>,
    unk: i64,
}

/// What a tokenizer folder defines.
pub struct TokenizerFiles {
    pub bpe: VocabBpe,
    pub raw_tokens: Vec<(String, i64)>,
    pub normalized_tokens: Vec<(String, i64)>,
    pub pad: i64,
}

/// GPT-2's reversible byte-to-character table.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    // The rest in order, from U+0100.
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).unwrap_or('\u{FFFD}')
}

impl VocabBpe {
    /// Pushes the ids of one pre-tokenised word.
    pub fn encode_word(&self, word: &str, ids: &mut Vec<i64>) {
        let mut symbols: Vec<String> = word.bytes().map(|b| byte_char(b).to_string()).collect();
        let Some(last) = symbols.last_mut() else {
            return;
        };
        last.push_str("</w>");
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|&r| (r, i))
                })
                .min();
            let Some((_, first)) = best else { break };
            let (a, b) = (symbols[first].clone(), symbols[first + 1].clone());
            // Every occurrence of the pair, left to right.
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == a && symbols[i + 1] == b {
                    merged.push(format!("{a}{b}"));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut symbols[i]));
                    i += 1;
                }
            }
            symbols = merged;
        }
        ids.extend(
            symbols
                .iter()
                .map(|s| self.vocab.get(s).copied().unwrap_or(self.unk)),
        );
    }
}

fn read(path: &Path) -> Result<Option<String>, TokenizerError> {
    if !path.is_file() {
        return Ok(None);
    }
    let err = |source| TokenizerError::Read {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(err)?.len();
    if len > MAX_FILE_BYTES {
        return Err(TokenizerError::Invalid {
            path: path.to_path_buf(),
            reason: format!("{len} bytes is too large for a tokenizer file"),
        });
    }
    std::fs::read_to_string(path).map(Some).map_err(err)
}

fn json(path: &Path) -> Result<Option<serde_json::Value>, TokenizerError> {
    read(path)?
        .map(|text| {
            nicheimage_common::pyjson::from_str(&text).map_err(|e| TokenizerError::Invalid {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

/// A special-token entry: `"<|endoftext|>"` or `{"content": "<|endoftext|>", ...}`.
fn token_content(v: &serde_json::Value) -> Option<&str> {
    v.as_str()
        .or_else(|| v.get("content").and_then(|c| c.as_str()))
}

impl TokenizerFiles {
    /// The largest id any token maps to.
    pub fn max_id(&self) -> i64 {
        self.ids().max().unwrap_or(0)
    }

    fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        let vocab = self.bpe.vocab.values().copied();
        let added = self
            .raw_tokens
            .iter()
            .chain(&self.normalized_tokens)
            .map(|(_, id)| *id);
        vocab.chain(added).chain([self.pad, self.bpe.unk])
    }

    /// Reads `dir`; `None` when it holds no vocabulary (the built-in one is used then).
    pub fn read(dir: &Path) -> Result<Option<Self>, TokenizerError> {
        let invalid = |path: &Path, reason: &str| TokenizerError::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        let mut vocab: HashMap<String, i64> = HashMap::new();
        let mut merges: Vec<(String, String)> = Vec::new();
        // (content, id, normalized)
        let mut added: Vec<(String, i64, bool)> = Vec::new();
        let whole = dir.join("tokenizer.json");
        if let Some(t) = json(&whole)? {
            let model = &t["model"];
            if model["type"].as_str().is_some_and(|k| k != "BPE") {
                return Err(invalid(&whole, "only a BPE model is supported"));
            }
            let v = model["vocab"]
                .as_object()
                .ok_or_else(|| invalid(&whole, "no model.vocab"))?;
            for (token, id) in v {
                let id = id
                    .as_i64()
                    .ok_or_else(|| invalid(&whole, "a vocabulary id is not a number"))?;
                vocab.insert(token.clone(), id);
            }
            for m in model["merges"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                // "a b" (older) or ["a", "b"] (tokenizers 0.20+).
                let pair = match m {
                    serde_json::Value::String(s) => s
                        .split_once(' ')
                        .map(|(a, b)| (a.to_string(), b.to_string())),
                    serde_json::Value::Array(p) => match (p.first(), p.get(1)) {
                        (Some(a), Some(b)) => a
                            .as_str()
                            .zip(b.as_str())
                            .map(|(a, b)| (a.into(), b.into())),
                        _ => None,
                    },
                    _ => None,
                };
                merges.push(pair.ok_or_else(|| invalid(&whole, "a merge is not a pair"))?);
            }
            for a in t["added_tokens"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if let (Some(content), Some(id)) = (a["content"].as_str(), a["id"].as_i64()) {
                    let normalized = a["normalized"].as_bool().unwrap_or(false);
                    added.push((
                        content.to_string(),
                        id,
                        normalized && !a["special"].as_bool().unwrap_or(false),
                    ));
                }
            }
        } else {
            let vocab_path = dir.join("vocab.json");
            let Some(v) = json(&vocab_path)? else {
                return Ok(None);
            };
            let v = v
                .as_object()
                .ok_or_else(|| invalid(&vocab_path, "not a JSON object"))?;
            for (token, id) in v {
                let id = id
                    .as_i64()
                    .ok_or_else(|| invalid(&vocab_path, "an id is not a number"))?;
                vocab.insert(token.clone(), id);
            }
            let merges_path = dir.join("merges.txt");
            let text = read(&merges_path)?
                .ok_or_else(|| invalid(&merges_path, "missing beside vocab.json"))?;
            for line in text.lines() {
                if line.starts_with("#version") || line.trim().is_empty() {
                    continue;
                }
                let (a, b) = line
                    .split_once(' ')
                    .ok_or_else(|| invalid(&merges_path, "a line is not a pair"))?;
                merges.push((a.to_string(), b.to_string()));
            }
            if let Some(extra) = json(&dir.join("added_tokens.json"))?
                && let Some(map) = extra.as_object()
            {
                for (content, id) in map {
                    if let Some(id) = id.as_i64() {
                        added.push((content.clone(), id, true));
                    }
                }
            }
        }
        let config = json(&dir.join("tokenizer_config.json"))?.unwrap_or_default();
        if let Some(decoder) = config["added_tokens_decoder"].as_object() {
            for (id, entry) in decoder {
                if let (Ok(id), Some(content)) = (id.parse::<i64>(), token_content(entry)) {
                    let special = entry["special"].as_bool().unwrap_or(false);
                    let normalized = entry["normalized"].as_bool().unwrap_or(!special);
                    added.push((content.to_string(), id, normalized && !special));
                }
            }
        }
        // The named special tokens are special added tokens (matched before normalisation).
        let map = json(&dir.join("special_tokens_map.json"))?.unwrap_or_default();
        let named = |key: &str| {
            token_content(&config[key])
                .or_else(|| token_content(&map[key]))
                .map(String::from)
        };
        let id_of = |content: &str, added: &[(String, i64, bool)]| {
            added
                .iter()
                .find(|(c, _, _)| c == content)
                .map(|(_, id, _)| *id)
                .or_else(|| vocab.get(content).copied())
        };
        for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            if let Some(content) = named(key)
                && let Some(id) = id_of(&content, &added)
            {
                added.push((content, id, false));
            }
        }
        let eos = named("eos_token").unwrap_or_else(|| "<|endoftext|>".into());
        let unk = named("unk_token")
            .and_then(|c| id_of(&c, &added))
            .unwrap_or(super::tokenizer::END_OF_TEXT);
        let pad = named("pad_token")
            .or(Some(eos))
            .and_then(|c| id_of(&c, &added))
            .unwrap_or(super::tokenizer::END_OF_TEXT);
        let (mut raw_tokens, mut normalized_tokens) = (Vec::new(), Vec::new());
        for (content, id, normalized) in added {
            let list = if normalized {
                &mut normalized_tokens
            } else {
                &mut raw_tokens
            };
            if !list.iter().any(|(c, _)| *c == content) {
                list.push((content, id));
            }
        }
        let ranks = merges
            .into_iter()
            .enumerate()
            .map(|(i, m)| (m, i))
            .collect();
        let files = Self {
            bpe: VocabBpe { vocab, ranks, unk },
            raw_tokens,
            normalized_tokens,
            pad,
        };
        if files.ids().any(|id| id < 0) {
            return Err(invalid(dir, "a token id is negative"));
        }
        Ok(Some(files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_table_is_gpt2s() {
        assert_eq!(byte_char(b'a'), 'a');
        assert_eq!(byte_char(b' '), '\u{120}');
        assert_eq!(byte_char(0), '\u{100}');
        assert_eq!(byte_char(0xAD), '\u{143}');
    }

    #[test]
    fn merges_apply_by_rank_and_unknowns_are_unk() {
        let vocab = [("c", 0), ("a", 1), ("t</w>", 2), ("ca", 3), ("cat</w>", 4)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let ranks = [(("c", "a"), 0), (("ca", "t</w>"), 1)]
            .into_iter()
            .map(|((a, b), r)| ((a.to_string(), b.to_string()), r))
            .collect();
        let bpe = VocabBpe {
            vocab,
            ranks,
            unk: 9,
        };
        let mut ids = Vec::new();
        bpe.encode_word("cat", &mut ids);
        bpe.encode_word("x", &mut ids);
        assert_eq!(ids, vec![4, 9]);
    }
}
