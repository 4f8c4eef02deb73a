//! One way to make HTTP clients: TLS through rustls with the ring provider, installed once.

/// A client for the node's outgoing HTTP (downloads, remote services).
pub fn client() -> reqwest::Client {
    // A second install (tests, several clients) is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("nicheimage-tui/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
