//! Checkpoint downloads: resumable (HTTP Range onto a `.part` file), sha256-verified, with
//! progress reported as it goes. A file that fails its hash is deleted, never served.

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

/// Downloads `url` to `dest`, resuming `dest.part` if an earlier attempt left one.
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
    let have = tokio::fs::metadata(&part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
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
    let (mut file, mut done, total) = match status {
        // The server resumes where we stopped.
        206 => {
            let file = tokio::fs::OpenOptions::new()
                .append(true)
                .open(&part)
                .await
                .map_err(io(&part))?;
            (
                Some(file),
                have,
                response.content_length().map(|n| n + have),
            )
        }
        200 => {
            let file = tokio::fs::File::create(&part).await.map_err(io(&part))?;
            (Some(file), 0, response.content_length())
        }
        // Nothing left to fetch: the part file is already complete.
        416 if have > 0 => (None, have, Some(have)),
        _ => {
            return Err(DownloadError::Status {
                url: url.to_string(),
                status,
            });
        }
    };
    if let Some(file) = file.as_mut() {
        progress(done, total);
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            file.write_all(&chunk).await.map_err(io(&part))?;
            done += chunk.len() as u64;
            progress(done, total);
        }
        file.flush().await.map_err(io(&part))?;
    }
    drop(file);
    if let Some(expected) = sha256 {
        let actual = sha256_file(&part).await?;
        if !actual.eq_ignore_ascii_case(expected) {
            tokio::fs::remove_file(&part).await.map_err(io(&part))?;
            return Err(DownloadError::Hash {
                path: dest.to_path_buf(),
                expected: expected.to_lowercase(),
                actual,
            });
        }
    }
    tokio::fs::rename(&part, dest).await.map_err(io(dest))?;
    Ok(())
}
