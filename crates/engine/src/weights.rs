//! Model weights: memory-mapped safetensors files, looked up by the diffusers parameter name
//! through a per-layout key map, with every missing, misshapen or unexpected key reported by
//! name. The same accessor also creates deterministic random weights (the tiny test model).

use safetensors::tensor::{Dtype, SafeTensors, TensorInfo};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("cannot open checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a valid safetensors file ({reason}); a truncated download looks like this"
    )]
    Format { path: PathBuf, reason: String },
    #[error("{path}: tensor `{name}` has unsupported dtype {dtype}")]
    Dtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error(transparent)]
    Torch(#[from] super::torch_file::TorchFileError),
    #[error("{dir} has no weights (looked for {tried})")]
    Missing { dir: PathBuf, tried: String },
    #[error("{model} weights do not match the architecture: {details}")]
    Mismatch { model: String, details: String },
}

/// One memory-mapped safetensors file, or the shards of one (tensors looked up across them).
pub struct SafetensorsFile {
    shards: Vec<Shard>,
    /// Tensor name -> (shard, its header entry).
    index: HashMap<String, (usize, TensorInfo)>,
}

struct Shard {
    path: PathBuf,
    map: memmap2::Mmap,
    data_start: usize,
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<Arc<Self>, WeightError> {
        Self::open_shards(&[path.to_path_buf()])
    }

    /// The shards of one model (each a whole safetensors file); a tensor in two is an error.
    pub fn open_shards(paths: &[PathBuf]) -> Result<Arc<Self>, WeightError> {
        let mut shards = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let io = |source| WeightError::Io {
                path: path.to_path_buf(),
                source,
            };
            let file = std::fs::File::open(path).map_err(io)?;
            // SAFETY: the file is opened read-only; like every safetensors reader we assume
            // nobody truncates it while we read.
            let map = unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(io)?;
            let (n, metadata) =
                SafeTensors::read_metadata(&map).map_err(|e| WeightError::Format {
                    path: path.to_path_buf(),
                    reason: format!("{e:?}"),
                })?;
            for (name, info) in metadata.tensors() {
                if index.insert(name.clone(), (i, info.clone())).is_some() {
                    return Err(WeightError::Format {
                        path: path.to_path_buf(),
                        reason: format!("tensor `{name}` is in two shards"),
                    });
                }
            }
            shards.push(Shard {
                path: path.to_path_buf(),
                map,
                data_start: 8 + n,
            });
        }
        if shards.is_empty() {
            return Err(WeightError::Format {
                path: PathBuf::new(),
                reason: "no shards".into(),
            });
        }
        Ok(Arc::new(Self { shards, index }))
    }

    /// The (first shard's) file.
    pub fn path(&self) -> &Path {
        &self.shards[0].path
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.index.keys()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Elements of one tensor, from the header (0 for an unknown name).
    pub fn numel(&self, name: &str) -> u64 {
        self.index
            .get(name)
            .map(|(_, i)| i.shape.iter().product::<usize>() as u64)
            .unwrap_or(0)
    }

    /// Elements of every tensor in the file, from the header.
    pub fn parameter_count(&self) -> u64 {
        self.names().map(|n| self.numel(n)).sum()
    }

    pub fn shape(&self, name: &str) -> Option<Vec<i64>> {
        self.index
            .get(name)
            .map(|(_, i)| i.shape.iter().map(|&d| d as i64).collect())
    }

    /// Copies one tensor out of the map (on the CPU, in its stored dtype).
    pub fn read(&self, name: &str) -> Result<Option<Tensor>, WeightError> {
        let Some((shard, info)) = self.index.get(name) else {
            return Ok(None);
        };
        let shard = &self.shards[*shard];
        let kind = match info.dtype {
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F32 => Kind::Float,
            Dtype::F64 => Kind::Double,
            Dtype::I64 => Kind::Int64,
            Dtype::I32 => Kind::Int,
            other => {
                return Err(WeightError::Dtype {
                    path: shard.path.clone(),
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        let (start, end) = info.data_offsets;
        let bytes = &shard.map[shard.data_start + start..shard.data_start + end];
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        Tensor::f_from_data_size(bytes, &shape, kind)
            .map(Some)
            .map_err(|e| WeightError::Format {
                path: shard.path.clone(),
                reason: format!("tensor `{name}`: {e}"),
            })
    }
}

/// Parameters per pipeline part, read from safetensors headers only (a single file by its key
/// prefixes, a diffusers folder by the files its loader picks).
pub fn parameter_counts(
    path: &Path,
) -> Result<nicheimage_common::torch::ParameterCounts, WeightError> {
    use super::folder::Library;
    let mut counts = nicheimage_common::torch::ParameterCounts::default();
    if path.is_dir() {
        for (sub, library) in [
            ("unet", Library::Diffusers),
            // FLUX's denoiser.
            ("transformer", Library::Diffusers),
            ("vae", Library::Diffusers),
            ("text_encoder", Library::Transformers),
            ("text_encoder_2", Library::Transformers),
        ] {
            let dir = path.join(sub);
            if !dir.is_dir() {
                continue;
            }
            let n = files_parameter_count(&super::folder::weight_files(&dir, library)?)?;
            match sub {
                "unet" | "transformer" => counts.unet += n,
                "vae" => counts.vae += n,
                _ => counts.text_encoders += n,
            }
        }
        return Ok(counts);
    }
    let f = SafetensorsFile::open(path)?;
    // FLUX's own transformer file: the rest of the pipeline is the folder named like it.
    if super::flux::single_file::find_prefix(&f).is_some() {
        let beside = parameter_counts(&path.with_extension(""))?;
        return Ok(nicheimage_common::torch::ParameterCounts {
            unet: f.parameter_count(),
            ..beside
        });
    }
    for name in f.names() {
        let n = f.numel(name);
        if name.starts_with("model.diffusion_model.") {
            counts.unet += n;
        } else if name.starts_with("first_stage_model.") {
            counts.vae += n;
        } else if name.starts_with("cond_stage_model.") || name.starts_with("conditioner.") {
            counts.text_encoders += n;
        }
    }
    Ok(counts)
}

/// Parameters in a component's files: safetensors headers; a torch pickle is not opened, its
/// size is taken as float32 parameters (an upper bound for a VRAM estimate).
fn files_parameter_count(files: &super::folder::WeightFiles) -> Result<u64, WeightError> {
    let mut n = 0u64;
    for path in files.paths() {
        n += match files {
            super::folder::WeightFiles::Safetensors(_) => {
                SafetensorsFile::open(path)?.parameter_count()
            }
            super::folder::WeightFiles::Torch(_) => {
                std::fs::metadata(path)
                    .map_err(|source| WeightError::Io {
                        path: path.clone(),
                        source,
                    })?
                    .len()
                    / 4
            }
        };
    }
    Ok(n)
}

/// Parameters of the diffusers model folders given (their weights files' headers only).
pub fn folder_parameter_count(dirs: &[PathBuf]) -> Result<u64, WeightError> {
    let mut n = 0u64;
    for dir in dirs {
        if let Ok(files) = super::folder::weight_files(dir, super::folder::Library::Diffusers) {
            n += files_parameter_count(&files)?;
        }
    }
    Ok(n)
}

/// Maps a diffusers parameter name to the name used in a file. A key may end in a [`Pick`]
/// suffix when the file stores the parameter differently (see [`pick_part`], [`pick_transposed`]).
pub type KeyMap = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// How a parameter is cut out of the file's tensor: OpenCLIP fuses q/k/v into one
/// `in_proj_weight` and stores its text projection transposed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pick {
    Whole,
    /// Blocks `index .. index + span` of `of` equal row blocks.
    Part {
        index: i64,
        span: i64,
        of: i64,
    },
    Transposed,
    /// The two row halves swapped (FLUX's original files hold (shift, scale) where diffusers
    /// holds (scale, shift)).
    SwapHalves,
}

const PICK_MARK: char = '#';

/// The file key for part `index` of `of` row blocks of `key`.
pub fn pick_part(key: &str, index: i64, of: i64) -> String {
    pick_parts(key, index, 1, of)
}

/// The file key for blocks `index .. index + span` of `of` row blocks of `key`.
pub fn pick_parts(key: &str, index: i64, span: i64, of: i64) -> String {
    format!("{key}{PICK_MARK}{index}+{span}/{of}")
}

/// The file key for `key` with its row halves swapped.
pub fn pick_swapped(key: &str) -> String {
    format!("{key}{PICK_MARK}S")
}

/// The file key for the transpose of `key`.
pub fn pick_transposed(key: &str) -> String {
    format!("{key}{PICK_MARK}T")
}

impl Pick {
    /// Splits a mapped key into the file's tensor name and the pick.
    pub fn parse(key: &str) -> (&str, Pick) {
        let Some((name, pick)) = key.split_once(PICK_MARK) else {
            return (key, Pick::Whole);
        };
        let pick = match pick.split_once('/') {
            _ if pick == "T" => Pick::Transposed,
            _ if pick == "S" => Pick::SwapHalves,
            Some((i, n)) => {
                let (i, s) = i.split_once('+').unwrap_or((i, "1"));
                match (i.parse::<i64>(), s.parse::<i64>(), n.parse::<i64>()) {
                    (Ok(index), Ok(span), Ok(of))
                        if index >= 0 && span >= 1 && index.saturating_add(span) <= of =>
                    {
                        Pick::Part { index, span, of }
                    }
                    _ => Pick::Whole,
                }
            }
            None => Pick::Whole,
        };
        (name, pick)
    }

    /// The parameter from the file's tensor; None when it cannot be cut as asked.
    pub fn apply(self, t: Tensor) -> Option<Tensor> {
        match self {
            Pick::Whole => Some(t),
            Pick::Transposed => (t.dim() == 2).then(|| t.transpose(0, 1).contiguous()),
            Pick::Part { index, span, of } => {
                let rows = t.size().first().copied()?;
                (rows % of == 0).then(|| {
                    t.narrow(0, index * rows / of, span * rows / of)
                        .contiguous()
                })
            }
            Pick::SwapHalves => {
                let rows = t.size().first().copied()?;
                (rows % 2 == 0).then(|| {
                    let h = t.chunk(2, 0);
                    Tensor::cat(&[&h[1], &h[0]], 0)
                })
            }
        }
    }

    /// The inverse, for writing files: parameters grouped by file key, joined back.
    pub fn assemble(mapped: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = Vec::new();
        let mut parts: Vec<(String, Vec<(i64, Tensor)>)> = Vec::new();
        for (key, t) in mapped {
            let (name, pick) = Pick::parse(&key);
            match pick {
                Pick::Whole => out.push((name.to_string(), t)),
                Pick::Transposed => out.push((name.to_string(), t.transpose(0, 1).contiguous())),
                Pick::SwapHalves => {
                    let h = t.chunk(2, 0);
                    out.push((name.to_string(), Tensor::cat(&[&h[1], &h[0]], 0)));
                }
                Pick::Part { index, .. } => match parts.iter_mut().find(|(n, _)| n == name) {
                    Some((_, v)) => v.push((index, t)),
                    None => parts.push((name.to_string(), vec![(index, t)])),
                },
            }
        }
        for (name, mut v) in parts {
            v.sort_by_key(|(i, _)| *i);
            let tensors: Vec<Tensor> = v.into_iter().map(|(_, t)| t).collect();
            out.push((name, Tensor::cat(&tensors, 0)));
        }
        out
    }
}

enum Source {
    File {
        file: Arc<SafetensorsFile>,
        key: KeyMap,
        prefix: String,
    },
    /// Tensors already in memory (a torch pickle or a small safetensors file read whole),
    /// looked up through `key`.
    Tensors {
        tensors: HashMap<String, Tensor>,
        key: KeyMap,
    },
    /// Deterministic random weights drawn from libtorch's global CPU generator.
    Random,
    /// Uninitialised: only the parameter names and shapes are wanted.
    Shapes,
}

#[derive(Default)]
struct Ledger {
    used: BTreeSet<String>,
    missing: Vec<String>,
    misshapen: Vec<String>,
    created: Vec<(String, Tensor)>,
}

/// Hands out parameters for one model (UNet, VAE or text encoder).
pub struct Weights {
    model: String,
    source: Source,
    kind: Kind,
    device: Device,
    ledger: RefCell<Ledger>,
}

impl Weights {
    /// `prefix` is the part of every file key that belongs to this model (for reporting
    /// unexpected keys), e.g. `model.diffusion_model.`.
    pub fn from_file(
        model: &str,
        file: Arc<SafetensorsFile>,
        key: KeyMap,
        prefix: &str,
        kind: Kind,
        device: Device,
    ) -> Self {
        Self {
            model: model.into(),
            source: Source::File {
                file,
                key,
                prefix: prefix.into(),
            },
            kind,
            device,
            ledger: RefCell::default(),
        }
    }

    /// Every tensor of a checkpoint (`.safetensors`, or a zip-format torch `.pt`/`.pth`), with
    /// the first matching `strip` prefix taken off each name (`model.`, `module.`...).
    pub fn from_checkpoint(
        model: &str,
        path: &Path,
        strip: &[&str],
        kind: Kind,
        device: Device,
    ) -> Result<Self, WeightError> {
        let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
        let named: Vec<(String, Tensor)> = if is_safetensors {
            let file = SafetensorsFile::open(path)?;
            let mut v = Vec::new();
            for name in file.names() {
                if let Some(t) = file.read(name)? {
                    v.push((name.clone(), t));
                }
            }
            v
        } else {
            super::torch_file::read_torch_file(path)?
        };
        let tensors = named
            .into_iter()
            .map(|(name, t)| {
                let name = strip
                    .iter()
                    .find_map(|p| name.strip_prefix(p))
                    .map(str::to_string)
                    .unwrap_or(name);
                (name, t)
            })
            .collect();
        Ok(Self {
            model: model.into(),
            source: Source::Tensors {
                tensors,
                key: Arc::new(|n: &str| n.to_string()),
            },
            kind,
            device,
            ledger: RefCell::default(),
        })
    }

    /// Tensors read whole (a torch pickle), looked up through `key`.
    pub fn from_tensors(
        model: &str,
        tensors: HashMap<String, Tensor>,
        key: KeyMap,
        kind: Kind,
        device: Device,
    ) -> Self {
        Self {
            model: model.into(),
            source: Source::Tensors { tensors, key },
            kind,
            device,
            ledger: RefCell::default(),
        }
    }

    pub fn random(model: &str, kind: Kind, device: Device) -> Self {
        Self {
            model: model.into(),
            source: Source::Random,
            kind,
            device,
            ledger: RefCell::default(),
        }
    }

    /// Records the architecture's parameter names and shapes without drawing anything.
    pub fn shapes(model: &str) -> Self {
        Self {
            model: model.into(),
            source: Source::Shapes,
            kind: Kind::Float,
            device: Device::Cpu,
            ledger: RefCell::default(),
        }
    }

    pub fn root(&self) -> Scope<'_> {
        Scope {
            weights: self,
            prefix: String::new(),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn device(&self) -> Device {
        self.device
    }

    fn fetch(&self, name: &str, shape: &[i64]) -> Tensor {
        let placeholder = || Tensor::zeros(shape, (self.kind, Device::Cpu));
        let tensor = match &self.source {
            Source::Random | Source::Shapes => {
                let t = match self.source {
                    Source::Random => random_init(name, shape),
                    // Never written to, so a full-size model costs no physical memory.
                    _ => Tensor::empty(shape, (Kind::Float, Device::Cpu)),
                };
                self.ledger
                    .borrow_mut()
                    .created
                    .push((name.to_string(), t.shallow_clone()));
                t
            }
            Source::File { file, key, .. } => {
                let mapped = key(name);
                let (file_key, pick) = Pick::parse(&mapped);
                let found = match file.read(file_key) {
                    Ok(Some(t)) => match pick.apply(t) {
                        Some(t) => Ok(Some(t)),
                        None => Err(format!("{file_key} cannot be cut as {pick:?}")),
                    },
                    Ok(None) => Ok(None),
                    Err(e) => Err(e.to_string()),
                };
                self.check(file_key, found, shape)
                    .unwrap_or_else(placeholder)
            }
            Source::Tensors { tensors, key } => {
                let mapped = key(name);
                let found = Ok(tensors.get(&mapped).map(Tensor::shallow_clone));
                self.check(&mapped, found, shape)
                    .unwrap_or_else(placeholder)
            }
        };
        tensor.to_kind(self.kind).to_device(self.device)
    }

    /// Records a looked-up tensor in the ledger; `None` when it is missing or misshapen.
    fn check(
        &self,
        key: &str,
        found: Result<Option<Tensor>, String>,
        shape: &[i64],
    ) -> Option<Tensor> {
        let mut ledger = self.ledger.borrow_mut();
        ledger.used.insert(key.to_string());
        match found {
            Err(reason) => {
                ledger.misshapen.push(reason);
                None
            }
            Ok(None) => {
                ledger.missing.push(key.to_string());
                None
            }
            Ok(Some(t)) => {
                let found = t.size();
                if found == shape {
                    Some(t)
                } else if found.len() == 4 && found[2..] == [1, 1] && found[..2] == *shape {
                    // 1x1 convolutions stored where diffusers has linear layers.
                    Some(t.reshape(shape))
                } else {
                    ledger
                        .misshapen
                        .push(format!("{key} is {found:?}, expected {shape:?}"));
                    None
                }
            }
        }
    }

    /// Succeeds when every parameter was found with the right shape. Keys of this model the
    /// architecture did not ask for are returned (and logged) as a warning, not an error.
    pub fn finish(&self) -> Result<Vec<String>, WeightError> {
        let ledger = self.ledger.borrow();
        let mut problems = Vec::new();
        let list = |v: &[String]| {
            let shown: Vec<&str> = v.iter().take(8).map(String::as_str).collect();
            let more = if v.len() > 8 {
                format!(" and {} more", v.len() - 8)
            } else {
                String::new()
            };
            format!("{}{more}", shown.join(", "))
        };
        if !ledger.missing.is_empty() {
            problems.push(format!(
                "{} missing: {}",
                ledger.missing.len(),
                list(&ledger.missing)
            ));
        }
        if !ledger.misshapen.is_empty() {
            problems.push(format!(
                "{} with the wrong shape: {}",
                ledger.misshapen.len(),
                list(&ledger.misshapen)
            ));
        }
        if !problems.is_empty() {
            return Err(WeightError::Mismatch {
                model: self.model.clone(),
                details: problems.join("; "),
            });
        }
        let unexpected: Vec<String> = match &self.source {
            Source::File { file, prefix, .. } => {
                let mut v: Vec<String> = file
                    .names()
                    .filter(|n| n.starts_with(prefix.as_str()) && !ledger.used.contains(*n))
                    .filter(|n| !IGNORED_BUFFERS.iter().any(|s| n.ends_with(s)))
                    .cloned()
                    .collect();
                v.sort();
                v
            }
            Source::Tensors { tensors, .. } => {
                let mut v: Vec<String> = tensors
                    .keys()
                    .filter(|n| !ledger.used.contains(*n))
                    .filter(|n| !IGNORED_BUFFERS.iter().any(|s| n.ends_with(s)))
                    .cloned()
                    .collect();
                v.sort();
                v
            }
            Source::Random | Source::Shapes => Vec::new(),
        };
        if !unexpected.is_empty() {
            tracing::warn!(model = %self.model, count = unexpected.len(), keys = %list(&unexpected), "checkpoint has keys this architecture does not use");
        }
        Ok(unexpected)
    }

    /// The parameters made in random or shapes mode, in creation order, by diffusers name.
    pub fn created(&self) -> Vec<(String, Tensor)> {
        self.ledger
            .borrow()
            .created
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect()
    }
}

/// Buffers real checkpoints carry that are not parameters.
const IGNORED_BUFFERS: &[&str] = &["embeddings.position_ids", "num_batches_tracked"];

/// Weights that keep a random network's activations in range: norms near 1, small biases,
/// the rest scaled by 1/sqrt(fan-in).
fn random_init(name: &str, shape: &[i64]) -> Tensor {
    let opts = (Kind::Float, Device::Cpu);
    let noise = Tensor::randn(shape, opts);
    if name.ends_with(".bias") {
        noise * 0.02
    } else if shape.len() == 1 {
        noise * 0.05 + 1.0
    } else {
        let fan_in: i64 = shape[1..].iter().product();
        noise / (fan_in as f64).sqrt()
    }
}

/// A view of [`Weights`] under a name prefix.
pub struct Scope<'a> {
    weights: &'a Weights,
    prefix: String,
}

impl<'a> Scope<'a> {
    pub fn at(&self, part: impl std::fmt::Display) -> Scope<'a> {
        Scope {
            weights: self.weights,
            prefix: if self.prefix.is_empty() {
                part.to_string()
            } else {
                format!("{}.{part}", self.prefix)
            },
        }
    }

    pub fn get(&self, name: &str, shape: &[i64]) -> Tensor {
        self.weights
            .fetch(&format!("{}.{name}", self.prefix), shape)
    }

    /// Checkpoint keys under `name` that the architecture knowingly leaves unused (a
    /// classifier head, a VAE encoder that txt2img never runs): not reported as unexpected, not
    /// required, and not read. The subtree's name goes through the key map as its parameters'
    /// names do (the maps rename prefixes, so a subtree maps to one file prefix).
    pub fn ignore(&self, name: &str) {
        let subtree = self.at(name).prefix;
        let under = |key: &KeyMap| {
            let mapped = key(&subtree);
            let (file_prefix, _) = Pick::parse(&mapped);
            format!("{file_prefix}.")
        };
        let mut ledger = self.weights.ledger.borrow_mut();
        match &self.weights.source {
            Source::File { file, key, .. } => {
                let prefix = under(key);
                for n in file.names().filter(|n| n.starts_with(&prefix)) {
                    ledger.used.insert(n.clone());
                }
            }
            Source::Tensors { tensors, key } => {
                let prefix = under(key);
                for n in tensors.keys().filter(|n| n.starts_with(&prefix)) {
                    ledger.used.insert(n.clone());
                }
            }
            Source::Random | Source::Shapes => {}
        }
    }

    pub fn kind(&self) -> Kind {
        self.weights.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors(names: &[&str]) -> Vec<(String, Tensor)> {
        names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    Tensor::zeros([2], (Kind::Float, Device::Cpu)),
                )
            })
            .collect()
    }

    #[test]
    fn an_ignored_subtree_is_neither_read_nor_unexpected_whatever_the_source() {
        let names = [
            "first_stage_model.encoder.conv.weight",
            "first_stage_model.encoder.down.0.weight",
            "first_stage_model.decoder.conv.weight",
        ];
        // The key map adds the file's prefix, as the single-file maps do.
        let key: KeyMap = Arc::new(|n: &str| format!("first_stage_model.{n}"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vae.safetensors");
        let named = tensors(&names);
        Tensor::write_safetensors(&named, &path).unwrap();
        let file = SafetensorsFile::open(&path).unwrap();
        let from_file = Weights::from_file(
            "vae",
            file,
            key.clone(),
            "first_stage_model.",
            Kind::Float,
            Device::Cpu,
        );
        let from_memory = Weights::from_tensors(
            "vae",
            named.into_iter().collect(),
            key,
            Kind::Float,
            Device::Cpu,
        );
        for w in [&from_file, &from_memory] {
            // At the root scope: no stray leading dot in the subtree's name.
            w.root().ignore("encoder");
            let _ = w.root().at("decoder").get("conv.weight", &[2]);
            assert_eq!(w.finish().unwrap(), Vec::<String>::new());
        }
        // Without the ignore, the encoder's keys are reported as unexpected.
        let file = SafetensorsFile::open(&path).unwrap();
        let w = Weights::from_file(
            "vae",
            file,
            Arc::new(|n: &str| format!("first_stage_model.{n}")),
            "first_stage_model.",
            Kind::Float,
            Device::Cpu,
        );
        let _ = w.root().at("decoder").get("conv.weight", &[2]);
        assert_eq!(w.finish().unwrap().len(), 2);
    }
}
