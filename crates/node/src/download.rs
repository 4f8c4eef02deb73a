//! Checkpoint downloads: resumable (HTTP Range onto a `.part` file), verified, with progress
//! reported as it goes. Verified means the pinned sha256 where the model has one; where it has
//! none (`sha256 = unknown`), a structural check: a parsable safetensors header whose tensors lie
//! inside the file, with the keys a Stable Diffusion single-file checkpoint has. A file that
//! fails its check is deleted, never served.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("download of {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} has sha256 {actual}, expected {expected}; the file was deleted")]
    Hash {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path} is not a usable checkpoint: {source}; the file was deleted")]
    Structure {
        path: PathBuf,
        source: StructureError,
    },
    #[error("{url} sent {got} bytes of {expected}; the part file is kept for a resume")]
    Truncated {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("{url} sent {got} bytes where it announced {expected}; the part file was deleted")]
    Oversize {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("{url} cannot be downloaded: {reason}")]
    Unusable { url: String, reason: String },
}

/// Why a file is not a Stable Diffusion single-file safetensors checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum StructureError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{len} bytes is too short for a safetensors file")]
    TooShort { len: u64 },
    #[error("its header claims {claimed} bytes but the file has {available} after the length")]
    HeaderTooLong { claimed: u64, available: u64 },
    #[error("its safetensors header is not valid JSON: {0}")]
    HeaderJson(String),
    #[error("tensor `{name}`: {reason}")]
    Tensor { name: String, reason: String },
    #[error("no tensor under `{0}`: not a Stable Diffusion single-file checkpoint")]
    MissingKeys(&'static str),
}

/// Bytes so far and the total when the server says it.
pub type Progress<'a> = &'a (dyn Fn(u64, Option<u64>) + Send + Sync);

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of a file, read in chunks.
pub async fn sha256_file(path: &Path) -> Result<String, DownloadError> {
    let mut file = tokio::fs::File::open(path).await.map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await.map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// The safetensors crate's own bound on the JSON header: larger is refused before reading it.
const MAX_HEADER: u64 = 100_000_000;

/// What a single-file SD checkpoint holds (the loader's prefixes, `nicheimage_engine::ldm`): the UNet,
/// the VAE, and a text encoder (SD 1.5's `cond_stage_model.`, SDXL's `conditioner.`).
const REQUIRED_PREFIXES: [(&str, &[&str]); 3] = [
    ("model.diffusion_model.", &["model.diffusion_model."]),
    ("first_stage_model.", &["first_stage_model."]),
    (
        "cond_stage_model. or conditioner.",
        &["cond_stage_model.", "conditioner."],
    ),
];

#[derive(serde::Deserialize)]
struct TensorEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

/// Checks `header` (the JSON after the 8-byte length) against `data_len`, the bytes after it.
fn check_header(header: &[u8], data_len: u64) -> Result<(), StructureError> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| StructureError::HeaderJson(e.to_string()))?;
    let bad = |name: &str, reason: String| StructureError::Tensor {
        name: name.to_string(),
        reason,
    };
    for (name, value) in map.iter().filter(|(k, _)| k.as_str() != "__metadata__") {
        let entry = <TensorEntry as serde::Deserialize>::deserialize(value)
            .map_err(|e| bad(name, e.to_string()))?;
        let [begin, end] = entry.data_offsets;
        if begin > end || end > data_len {
            return Err(bad(
                name,
                format!("data {begin}..{end} is outside the {data_len} data bytes"),
            ));
        }
        let size = dtype_size(&entry.dtype)
            .ok_or_else(|| bad(name, format!("unknown dtype {}", entry.dtype)))?;
        let bytes = entry
            .shape
            .iter()
            .try_fold(size, |n, d| n.checked_mul(*d))
            .ok_or_else(|| bad(name, "its shape overflows".into()))?;
        if bytes != end - begin {
            return Err(bad(
                name,
                format!(
                    "shape {:?} of {} needs {bytes} bytes, it has {}",
                    entry.shape,
                    entry.dtype,
                    end - begin
                ),
            ));
        }
    }
    for (what, prefixes) in REQUIRED_PREFIXES {
        if !map
            .keys()
            .any(|k| prefixes.iter().any(|p| k.starts_with(p)))
        {
            return Err(StructureError::MissingKeys(what));
        }
    }
    Ok(())
}

/// The structural check for a checkpoint with no pinned sha256: a safetensors file (8-byte
/// little-endian header length bounded by the file, a JSON header, every tensor inside the file
/// with the size its shape needs) holding a UNet, a VAE and a text encoder. Reads the header
/// only.
pub fn check_checkpoint(path: &Path) -> Result<(), StructureError> {
    use std::io::Read;
    let io = |source| StructureError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let available = len.checked_sub(8).ok_or(StructureError::TooShort { len })?;
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(io)?;
    let claimed = u64::from_le_bytes(prefix);
    if claimed > available || claimed > MAX_HEADER {
        return Err(StructureError::HeaderTooLong { claimed, available });
    }
    // Bounded just above by the file's size and MAX_HEADER.
    let size = usize::try_from(claimed)
        .map_err(|_| StructureError::HeaderTooLong { claimed, available })?;
    let mut header = vec![0u8; size];
    file.read_exact(&mut header).map_err(io)?;
    check_header(&header, available - claimed)
}

/// A `Content-Range` value: `bytes first-last/complete` (206) or `bytes */complete` (416).
#[derive(Debug, PartialEq, Eq)]
struct ContentRange {
    first: Option<u64>,
    complete: Option<u64>,
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let (range, complete) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let complete = match complete.trim() {
        "*" => None,
        n => Some(n.parse().ok()?),
    };
    let first = match range.trim() {
        "*" => None,
        r => {
            let (first, last) = r.split_once('-')?;
            let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
            if last < first {
                return None;
            }
            Some(first)
        }
    };
    Some(ContentRange { first, complete })
}

fn content_range(response: &reqwest::Response) -> Option<ContentRange> {
    response
        .headers()
        .get(reqwest::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_content_range)
}

/// How one request left the part file.
enum Transfer {
    /// The part holds the whole file (as far as the server says): verify it.
    Done { resumed: bool },
    /// What we had cannot be continued: start again from byte 0.
    Restart(String),
}

/// The pinned sha256, else the structural check.
async fn verify(part: &Path, dest: &Path, sha256: Option<&str>) -> Result<(), DownloadError> {
    if let Some(expected) = sha256 {
        let actual = sha256_file(part).await?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(DownloadError::Hash {
                path: dest.to_path_buf(),
                expected: expected.to_lowercase(),
                actual,
            });
        }
        return Ok(());
    }
    let file = part.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || check_checkpoint(&file))
        .await
        .unwrap_or_else(|e| {
            Err(StructureError::Io {
                path: part.to_path_buf(),
                source: std::io::Error::other(e),
            })
        });
    checked.map_err(|source| DownloadError::Structure {
        path: dest.to_path_buf(),
        source,
    })
}

/// Downloads `url` to `dest`, resuming `dest.part` if an earlier attempt left one.
///
/// Bytes kept from an earlier attempt are not trusted: a resume must continue at our offset, a
/// 416 ("range not satisfiable") counts as complete only when the server's size is ours (or the
/// pinned sha256 matches), and a resumed file that fails verification is fetched once more
/// from byte 0.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    progress: Progress<'_>,
) -> Result<(), DownloadError> {
    let part = dest.with_extension("part");
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
    }
    let mut from_scratch = false;
    loop {
        if from_scratch {
            remove_if_there(&part).await?;
        }
        let have = tokio::fs::metadata(&part)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let checked = match transfer(client, url, &part, have, sha256, progress).await? {
            Transfer::Restart(reason) if !from_scratch => Err(reason),
            // Even from byte 0 the server's answer does not fit: never loop on it.
            Transfer::Restart(reason) => {
                remove_if_there(&part).await?;
                return Err(DownloadError::Unusable {
                    url: url.to_string(),
                    reason,
                });
            }
            Transfer::Done { resumed } => match verify(&part, dest, sha256).await {
                Ok(()) => Ok(()),
                Err(e) if resumed && !from_scratch => Err(e.to_string()),
                Err(e) => {
                    remove_if_there(&part).await?;
                    return Err(e);
                }
            },
        };
        match checked {
            Ok(()) => break,
            Err(reason) => {
                tracing::warn!(
                    %url,
                    part = %part.display(),
                    %reason,
                    "the kept part cannot be used; downloading again from the start"
                );
                from_scratch = true;
            }
        }
    }
    tokio::fs::rename(&part, dest).await.map_err(io(dest))?;
    Ok(())
}

async fn remove_if_there(path: &Path) -> Result<(), DownloadError> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

/// One request onto `part`, which holds `have` bytes from earlier.
async fn transfer(
    client: &reqwest::Client,
    url: &str,
    part: &Path,
    have: u64,
    sha256: Option<&str>,
    progress: Progress<'_>,
) -> Result<Transfer, DownloadError> {
    let http = |source| DownloadError::Http {
        url: url.to_string(),
        source,
    };
    let mut request = client.get(url);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().await.map_err(http)?;
    let status = response.status().as_u16();
    let range = content_range(&response);
    let (mut file, mut done, total) = match status {
        206 => {
            // A server that answers from another offset would splice two files together.
            let first = range.as_ref().and_then(|r| r.first);
            if first != Some(have) {
                return Ok(Transfer::Restart(format!(
                    "asked to resume at byte {have}, the server answered from {first:?}"
                )));
            }
            let file = tokio::fs::OpenOptions::new()
                .append(true)
                .open(part)
                .await
                .map_err(io(part))?;
            let total = range
                .and_then(|r| r.complete)
                .or_else(|| response.content_length().and_then(|n| n.checked_add(have)));
            (file, have, total)
        }
        200 => {
            let file = tokio::fs::File::create(part).await.map_err(io(part))?;
            (file, 0, response.content_length())
        }
        // 416 says only that byte `have` is not inside the remote file: the part may be
        // complete, longer than the file, or from a file that has changed since.
        416 if have > 0 => {
            let remote = range.and_then(|r| r.complete);
            return Ok(
                if remote == Some(have) || (remote.is_none() && sha256.is_some()) {
                    progress(have, Some(have));
                    Transfer::Done { resumed: true }
                } else {
                    Transfer::Restart(match remote {
                        Some(n) => format!("the part has {have} bytes, the remote file {n}"),
                        None => format!("416 for a {have}-byte part without the remote size"),
                    })
                },
            );
        }
        _ => {
            return Err(DownloadError::Status {
                url: url.to_string(),
                status,
            });
        }
    };
    progress(done, total);
    while let Some(chunk) = response.chunk().await.map_err(http)? {
        file.write_all(&chunk).await.map_err(io(part))?;
        done = done.saturating_add(chunk.len() as u64);
        progress(done, total);
    }
    file.flush().await.map_err(io(part))?;
    match total {
        Some(expected) if done < expected => {
            return Err(DownloadError::Truncated {
                url: url.to_string(),
                got: done,
                expected,
            });
        }
        Some(expected) if done > expected => {
            drop(file);
            remove_if_there(part).await?;
            return Err(DownloadError::Oversize {
                url: url.to_string(),
                got: done,
                expected,
            });
        }
        _ => {}
    }
    Ok(Transfer::Done {
        resumed: status == 206,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of F32 tensors named `names`, each of `n` values.
    fn safetensors(names: &[&str], n: u64) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        for (i, name) in names.iter().enumerate() {
            let begin = i as u64 * n * 4;
            header.insert(
                (*name).into(),
                serde_json::json!({
                    "dtype": "F32", "shape": [n], "data_offsets": [begin, begin + n * 4],
                }),
            );
        }
        let header = serde_json::to_vec(&header).unwrap();
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(&header);
        file.extend(std::iter::repeat_n(0u8, names.len() * n as usize * 4));
        file
    }

    const SD15: [&str; 3] = [
        "model.diffusion_model.input_blocks.0.0.weight",
        "first_stage_model.decoder.conv_in.weight",
        "cond_stage_model.transformer.text_model.final_layer_norm.weight",
    ];

    fn check(bytes: &[u8]) -> Result<(), StructureError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, bytes).unwrap();
        check_checkpoint(&path)
    }

    #[test]
    fn a_whole_sd_checkpoint_passes() {
        check(&safetensors(&SD15, 16)).unwrap();
        let sdxl = [
            SD15[0],
            SD15[1],
            "conditioner.embedders.1.model.ln_final.weight",
        ];
        check(&safetensors(&sdxl, 16)).unwrap();
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let whole = safetensors(&SD15, 16);
        let err = check(&whole[..whole.len() - 10]).unwrap_err();
        assert!(matches!(err, StructureError::Tensor { .. }), "{err}");
        assert!(err.to_string().contains("outside"), "{err}");
        // Cut inside the header.
        let err = check(&whole[..40]).unwrap_err();
        assert!(matches!(err, StructureError::HeaderTooLong { .. }), "{err}");
        assert!(matches!(
            check(&whole[..5]).unwrap_err(),
            StructureError::TooShort { len: 5 }
        ));
    }

    #[test]
    fn a_header_length_beyond_the_file_is_refused_before_reading() {
        let mut file = u64::MAX.to_le_bytes().to_vec();
        file.extend_from_slice(b"{}");
        let err = check(&file).unwrap_err();
        assert!(
            matches!(
                err,
                StructureError::HeaderTooLong {
                    claimed: u64::MAX,
                    available: 2
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_safetensors_file_that_is_not_stable_diffusion_is_refused() {
        let err = check(&safetensors(
            &["encoder.layer.0.weight", "pooler.dense.bias"],
            4,
        ))
        .unwrap_err();
        assert!(
            matches!(err, StructureError::MissingKeys("model.diffusion_model.")),
            "{err}"
        );
        // A UNet and VAE but no text encoder.
        let err = check(&safetensors(&SD15[..2], 4)).unwrap_err();
        assert!(err.to_string().contains("cond_stage_model."), "{err}");
    }

    #[test]
    fn bad_headers_and_tensors_are_refused() {
        let mut file = 5u64.to_le_bytes().to_vec();
        file.extend_from_slice(b"{nope");
        assert!(matches!(
            check(&file).unwrap_err(),
            StructureError::HeaderJson(_)
        ));
        // A shape that needs more bytes than its offsets give.
        let header = serde_json::to_vec(&serde_json::json!({
            SD15[0]: {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 16]},
        }))
        .unwrap();
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(&header);
        file.extend([0u8; 16]);
        let err = check(&file).unwrap_err();
        assert!(err.to_string().contains("needs 64 bytes"), "{err}");
        // A shape whose byte count overflows u64.
        let header = serde_json::to_vec(&serde_json::json!({
            SD15[0]: {"dtype": "F64", "shape": [u64::MAX, 2], "data_offsets": [0, 0]},
        }))
        .unwrap();
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(&header);
        assert!(check(&file).unwrap_err().to_string().contains("overflows"));
    }

    #[test]
    fn content_ranges_parse() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some(ContentRange {
                first: Some(100),
                complete: Some(200)
            })
        );
        assert_eq!(
            parse_content_range("bytes */3000"),
            Some(ContentRange {
                first: None,
                complete: Some(3000)
            })
        );
        assert_eq!(
            parse_content_range("bytes 0-9/*"),
            Some(ContentRange {
                first: Some(0),
                complete: None
            })
        );
        for bad in [
            "bytes 9-0/10",
            "items 0-1/2",
            "bytes 0-1",
            "bytes x-1/2",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
