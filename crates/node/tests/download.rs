//! Checkpoint downloads against a local HTTP server that honours Range requests.

use nicheimage_node::download::{DownloadError, fetch, hex};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use warp::Filter;
use warp::http::{Response, StatusCode};

struct Server {
    url: String,
    ranged: Arc<AtomicUsize>,
    /// Requests without a Range header.
    full: Arc<AtomicUsize>,
}

async fn serve(body: Vec<u8>) -> Server {
    serve_with(body, true).await
}

/// `sized_416`: a 416 says the file's size (`Content-Range: bytes */N`), as RFC 9110 asks.
async fn serve_with(body: Vec<u8>, sized_416: bool) -> Server {
    let body = Arc::new(body);
    let ranged = Arc::new(AtomicUsize::new(0));
    let full = Arc::new(AtomicUsize::new(0));
    let (seen, seen_full) = (ranged.clone(), full.clone());
    let file = warp::path!("model.safetensors")
        .and(warp::header::optional::<String>("range"))
        .map(move |range: Option<String>| {
            let from = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok());
            if from.is_none() {
                seen_full.fetch_add(1, Ordering::SeqCst);
            }
            match from {
                Some(n) if n >= body.len() => {
                    let mut r = Response::builder().status(StatusCode::RANGE_NOT_SATISFIABLE);
                    if sized_416 {
                        r = r.header("content-range", format!("bytes */{}", body.len()));
                    }
                    r.body(Vec::new())
                }
                Some(n) => {
                    seen.fetch_add(1, Ordering::SeqCst);
                    Response::builder()
                        .status(StatusCode::PARTIAL_CONTENT)
                        .header(
                            "content-range",
                            format!("bytes {n}-{}/{}", body.len() - 1, body.len()),
                        )
                        .body(body[n..].to_vec())
                }
                None => Response::builder()
                    .status(StatusCode::OK)
                    .body(body.to_vec()),
            }
            .unwrap()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(file).incoming(listener).run());
    Server {
        url: format!("http://{addr}/model.safetensors"),
        ranged,
        full,
    }
}

/// A small safetensors file with the keys of an SD 1.5 single-file checkpoint.
fn sd_checkpoint() -> Vec<u8> {
    let names = [
        "model.diffusion_model.input_blocks.0.0.weight",
        "first_stage_model.decoder.conv_in.weight",
        "cond_stage_model.transformer.text_model.final_layer_norm.weight",
    ];
    let n = 50_000u64;
    let mut header = serde_json::Map::new();
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
    file.extend((0..names.len() as u64 * n * 4).map(|i| (i % 251) as u8));
    file
}

fn payload() -> (Vec<u8>, String) {
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sha = hex(&Sha256::digest(&body));
    (body, sha)
}

#[tokio::test]
async fn downloads_verify_and_report_progress() {
    let (body, sha) = payload();
    let server = serve(body.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("checkpoints/model.safetensors");
    let seen = Mutex::new(Vec::new());
    let progress = |done: u64, total: Option<u64>| seen.lock().unwrap().push((done, total));
    fetch(
        &nicheimage_common::http::client().unwrap(),
        &server.url,
        &dest,
        Some(&sha),
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let seen = seen.into_inner().unwrap();
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(
        seen.last(),
        Some(&(body.len() as u64, Some(body.len() as u64)))
    );
    assert!(!dest.with_extension("part").exists());
}

#[tokio::test]
async fn an_interrupted_download_resumes_with_a_range_request() {
    let (body, sha) = payload();
    let server = serve(body.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.safetensors");
    std::fs::write(dest.with_extension("part"), &body[..1_234_567]).unwrap();
    let first = Mutex::new(None);
    let progress = |done: u64, _| {
        first.lock().unwrap().get_or_insert(done);
    };
    fetch(
        &nicheimage_common::http::client().unwrap(),
        &server.url,
        &dest,
        Some(&sha),
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(server.ranged.load(Ordering::SeqCst), 1);
    assert_eq!(
        *first.lock().unwrap(),
        Some(1_234_567),
        "counting starts from what was there"
    );

    // A complete part file: the server says 416 and the file is verified and kept.
    let again = dir.path().join("again.safetensors");
    std::fs::write(again.with_extension("part"), &body).unwrap();
    fetch(
        &nicheimage_common::http::client().unwrap(),
        &server.url,
        &again,
        Some(&sha),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), body);
}

#[tokio::test]
async fn a_bad_hash_deletes_the_file_and_says_so() {
    let (body, _) = payload();
    let server = serve(body).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.safetensors");
    let wrong = "00".repeat(32);
    let err = fetch(
        &nicheimage_common::http::client().unwrap(),
        &server.url,
        &dest,
        Some(&wrong),
        &|_, _| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DownloadError::Hash { .. }), "{err}");
    assert!(err.to_string().contains("was deleted"), "{err}");
    assert!(!dest.exists() && !dest.with_extension("part").exists());

    let missing = server.url.replace("model.safetensors", "nope");
    let err = fetch(
        &nicheimage_common::http::client().unwrap(),
        &missing,
        &dest,
        None,
        &|_, _| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test]
async fn a_416_is_not_taken_as_a_complete_file() {
    let body = sd_checkpoint();
    let client = nicheimage_common::http::client().unwrap();
    let dir = tempfile::tempdir().unwrap();

    // The part is longer than the remote file (another file, or junk appended): the 416 says
    // the remote size, which is not ours, so the download starts again.
    let server = serve(body.clone()).await;
    let dest = dir.path().join("longer.safetensors");
    let mut longer = body.clone();
    longer.extend_from_slice(b"junk after the end");
    std::fs::write(dest.with_extension("part"), &longer).unwrap();
    fetch(&client, &server.url, &dest, None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(
        server.full.load(Ordering::SeqCst),
        1,
        "restarted from byte 0"
    );

    // A 416 without the remote size proves nothing either (no sha256 to check against).
    let server = serve_with(body.clone(), false).await;
    let dest = dir.path().join("unsized.safetensors");
    std::fs::write(dest.with_extension("part"), &longer).unwrap();
    fetch(&client, &server.url, &dest, None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(server.full.load(Ordering::SeqCst), 1);

    // Same size as the remote file but not a checkpoint (no sha256 pinned): the structural check
    // refuses it and the file is fetched again.
    let server = serve(body.clone()).await;
    let dest = dir.path().join("garbled.safetensors");
    std::fs::write(dest.with_extension("part"), vec![7u8; body.len()]).unwrap();
    fetch(&client, &server.url, &dest, None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(server.full.load(Ordering::SeqCst), 1);

    // With a pinned sha256 a 416 without the size is checked by hash: a whole part is kept
    // without fetching anything, a wrong one is fetched again.
    let sha = hex(&Sha256::digest(&body));
    let server = serve_with(body.clone(), false).await;
    let dest = dir.path().join("pinned.safetensors");
    std::fs::write(dest.with_extension("part"), &body).unwrap();
    fetch(&client, &server.url, &dest, Some(&sha), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(server.full.load(Ordering::SeqCst), 0);
    let dest = dir.path().join("pinned-wrong.safetensors");
    std::fs::write(dest.with_extension("part"), &longer).unwrap();
    fetch(&client, &server.url, &dest, Some(&sha), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(server.full.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_a_sha256_a_download_must_look_like_a_checkpoint() {
    let client = nicheimage_common::http::client().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = serve(sd_checkpoint()).await;
    let dest = dir.path().join("good.safetensors");
    fetch(&client, &good.url, &dest, None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), sd_checkpoint());

    // A fresh download that is not a Stable Diffusion safetensors file is deleted and refused.
    let (junk, _) = payload();
    let bad = serve(junk).await;
    let dest = dir.path().join("bad.safetensors");
    let err = fetch(&client, &bad.url, &dest, None, &|_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::Structure { .. }), "{err}");
    assert!(err.to_string().contains("was deleted"), "{err}");
    assert!(!dest.exists() && !dest.with_extension("part").exists());
    assert_eq!(
        bad.full.load(Ordering::SeqCst),
        1,
        "a fresh download is not retried"
    );
}
