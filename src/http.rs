//! One way to make HTTP clients: TLS through rustls with the ring provider, installed once.

/// Installs the ring crypto provider for rustls (a second install is refused harmlessly).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A builder with the node's defaults, for clients that need more settings.
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder().user_agent(concat!("nicheimage-tui/", env!("CARGO_PKG_VERSION")))
}

/// A client for the node's outgoing HTTP (downloads, remote services).
pub fn client() -> reqwest::Client {
    client_builder()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
