//! Checkpoint downloads against a local HTTP server that honours Range requests.

use nicheimage_tui::download::{DownloadError, fetch, hex};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use warp::Filter;
use warp::http::{Response, StatusCode};

struct Server {
    url: String,
    ranged: Arc<AtomicUsize>,
}

async fn serve(body: Vec<u8>) -> Server {
    let body = Arc::new(body);
    let ranged = Arc::new(AtomicUsize::new(0));
    let seen = ranged.clone();
    let file = warp::path!("model.safetensors")
        .and(warp::header::optional::<String>("range"))
        .map(move |range: Option<String>| {
            let from = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok());
            match from {
                Some(n) if n >= body.len() => Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .body(Vec::new()),
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
    }
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
        &nicheimage_tui::http::client(),
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
        &nicheimage_tui::http::client(),
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
        &nicheimage_tui::http::client(),
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
        &nicheimage_tui::http::client(),
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
        &nicheimage_tui::http::client(),
        &missing,
        &dest,
        None,
        &|_, _| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}
