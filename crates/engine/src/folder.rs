//! The weight files of a diffusers folder, chosen as `from_pretrained` chooses them: per
//! component, safetensors before torch pickles, a single file before a sharded index, and the
//! files without a variant before the `fp16` variant (what `variant="fp16"` loads, used here
//! when a repository ships only that, as many SDXL repositories do).

use super::weights::{KeyMap, SafetensorsFile, WeightError, Weights};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// Who saved the component, which names its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    /// `diffusion_pytorch_model.safetensors` / `.bin` (UNet, VAE, ControlNet).
    Diffusers,
    /// `model.safetensors` / `pytorch_model.bin` (the CLIP text encoders).
    Transformers,
}

/// A component's weights as the folder holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightFiles {
    /// One safetensors file, or the shards an index names.
    Safetensors(Vec<PathBuf>),
    /// One torch pickle (`torch.save`'s zip format), or its shards.
    Torch(Vec<PathBuf>),
}

impl WeightFiles {
    pub fn paths(&self) -> &[PathBuf] {
        match self {
            Self::Safetensors(p) | Self::Torch(p) => p,
        }
    }
}

/// The shard-index limit: real indexes are tens of kilobytes.
const MAX_INDEX_BYTES: u64 = 64 << 20;

/// The files `from_pretrained` reads for the component in `dir`; an error naming what was
/// looked for when there is none.
pub fn weight_files(dir: &Path, library: Library) -> Result<WeightFiles, WeightError> {
    let (st, bin) = match library {
        Library::Diffusers => ("diffusion_pytorch_model", "diffusion_pytorch_model"),
        Library::Transformers => ("model", "pytorch_model"),
    };
    let mut tried = Vec::new();
    for variant in ["", ".fp16"] {
        let single = [
            (format!("{st}{variant}.safetensors"), true),
            (format!("{bin}{variant}.bin"), false),
        ];
        // Sharded: `<stem>.safetensors.index.json`, the variant `<stem>.safetensors.index.fp16.json`.
        let indexes = [
            (format!("{st}.safetensors.index{variant}.json"), true),
            (format!("{bin}.bin.index{variant}.json"), false),
        ];
        for ((file, safe), (index, index_safe)) in single.into_iter().zip(indexes) {
            let path = dir.join(&file);
            if path.is_file() {
                return Ok(wrap(vec![path], safe));
            }
            let path = dir.join(&index);
            if path.is_file() {
                return Ok(wrap(shards(&path)?, index_safe));
            }
            tried.push(file);
            tried.push(index);
        }
    }
    Err(WeightError::Missing {
        dir: dir.to_path_buf(),
        tried: tried.join(", "),
    })
}

fn wrap(paths: Vec<PathBuf>, safetensors: bool) -> WeightFiles {
    match safetensors {
        true => WeightFiles::Safetensors(paths),
        false => WeightFiles::Torch(paths),
    }
}

/// The shard files an index's `weight_map` names (plain file names beside the index).
fn shards(index: &Path) -> Result<Vec<PathBuf>, WeightError> {
    let bad = |reason: String| WeightError::Format {
        path: index.to_path_buf(),
        reason,
    };
    let io = |source| WeightError::Io {
        path: index.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(index).map_err(io)?.len();
    if len > MAX_INDEX_BYTES {
        return Err(bad(format!("{len} bytes is not a shard index")));
    }
    let text = std::fs::read_to_string(index).map_err(io)?;
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let parsed: Index =
        nicheimage_common::pyjson::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let files: BTreeSet<&String> = parsed.weight_map.values().collect();
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut out = Vec::with_capacity(files.len());
    for name in files {
        let plain = Path::new(name)
            .file_name()
            .is_some_and(|f| f == name.as_str());
        if !plain {
            return Err(bad(format!(
                "shard `{name}` is not a file name beside the index"
            )));
        }
        let path = dir.join(name);
        if !path.is_file() {
            return Err(bad(format!("shard `{name}` is missing")));
        }
        out.push(path);
    }
    if out.is_empty() {
        return Err(bad("the weight map is empty".into()));
    }
    Ok(out)
}

/// A component's opened weights, before they are handed to a model.
pub enum Opened {
    File(Arc<SafetensorsFile>),
    Tensors(HashMap<String, Tensor>),
}

impl Opened {
    pub fn open(files: &WeightFiles) -> Result<Self, WeightError> {
        match files {
            WeightFiles::Safetensors(paths) => Ok(Self::File(SafetensorsFile::open_shards(paths)?)),
            WeightFiles::Torch(paths) => {
                let mut tensors = HashMap::new();
                for path in paths {
                    for (name, t) in super::torch_file::read_torch_file(path)? {
                        if tensors.insert(name.clone(), t).is_some() {
                            return Err(WeightError::Format {
                                path: path.clone(),
                                reason: format!("tensor `{name}` is in two shards"),
                            });
                        }
                    }
                }
                Ok(Self::Tensors(tensors))
            }
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        match self {
            Self::File(f) => f.contains(name),
            Self::Tensors(t) => t.contains_key(name),
        }
    }

    /// The weights for `model`, looked up through `key` (our parameter name -> the file's).
    pub fn weights(self, model: &str, key: KeyMap, kind: Kind, device: Device) -> Weights {
        match self {
            Self::File(file) => Weights::from_file(model, file, key, "", kind, device),
            Self::Tensors(tensors) => Weights::from_tensors(model, tensors, key, kind, device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn files_are_chosen_in_diffusers_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let err = weight_files(d, Library::Transformers)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("pytorch_model.bin"),
            "{err}"
        );
        touch(d, "model.fp16.safetensors", "");
        assert_eq!(
            weight_files(d, Library::Transformers).unwrap(),
            WeightFiles::Safetensors(vec![d.join("model.fp16.safetensors")])
        );
        touch(d, "pytorch_model.bin", "");
        assert_eq!(
            weight_files(d, Library::Transformers).unwrap(),
            WeightFiles::Torch(vec![d.join("pytorch_model.bin")]),
            "no variant before the fp16 variant"
        );
        touch(d, "model.safetensors", "");
        assert_eq!(
            weight_files(d, Library::Transformers).unwrap(),
            WeightFiles::Safetensors(vec![d.join("model.safetensors")])
        );
    }

    #[test]
    fn shard_indexes_name_files_beside_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(d, "a.safetensors", "");
        touch(d, "b.safetensors", "");
        touch(
            d,
            "diffusion_pytorch_model.safetensors.index.fp16.json",
            r#"{"metadata": {"total_size": 1}, "weight_map": {"x": "b.safetensors", "y": "a.safetensors", "z": "b.safetensors"}}"#,
        );
        assert_eq!(
            weight_files(d, Library::Diffusers).unwrap(),
            WeightFiles::Safetensors(vec![d.join("a.safetensors"), d.join("b.safetensors")])
        );
        touch(
            d,
            "diffusion_pytorch_model.safetensors.index.json",
            r#"{"weight_map": {"x": "../secret.safetensors"}}"#,
        );
        let err = weight_files(d, Library::Diffusers).unwrap_err().to_string();
        assert!(err.contains("not a file name"), "{err}");
    }
}
