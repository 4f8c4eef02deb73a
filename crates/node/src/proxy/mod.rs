//! The validator proxy (opt-in): the subnet owner's clients generate images through this
//! validator's best miners, signed by the owner's key, some answers checked against a
//! regeneration, every request counted per day. The listener is switched on and off at run
//! time (`Command::SetProxy`) without touching the validator; switching off lets in-flight
//! requests finish. The choice is remembered across restarts.

pub mod auth;
pub mod client;
pub mod counters;
pub mod gate;
pub mod handler;
pub mod owner_api;
pub mod select;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};

use crate::catalogue::ModelSpec;
use crate::runtime::event::ProxyReport;
use crate::runtime::{Component, ComponentContext, Event};
use crate::validator::ValidatorShared;
use counters::Counters;
use nicheimage_bittensor::chain::Chain;
use nicheimage_bittensor::dendrite::Dendrite;
use nicheimage_bittensor::keypair::Keypair;

pub struct ProxySettings {
    pub listen: SocketAddr,
    pub netuid: u16,
    pub models: BTreeMap<String, ModelSpec>,
    /// Where organic checks are judged (`{model}` → the model's name).
    pub reward_url: String,
    pub owner_public_key: Option<VerifyingKey>,
    /// The owner API's base URL (credentials exchange); empty: none.
    pub owner_api_url: String,
    /// Accept an owner API that is not `https://` (loopback is always accepted).
    pub allow_insecure_owner_api: bool,
    pub credentials_refresh: Duration,
    pub legacy_auth: bool,
    pub max_age: Duration,
    pub miner_score_threshold: f64,
    pub checking_probability: f64,
    pub max_concurrent: usize,
    /// Authenticated requests a minute per address.
    pub rate_limit_per_minute: u32,
    /// Failed authentications a minute per address, counted apart from the above.
    pub unauthenticated_per_minute: u32,
    /// How requests to miners are signed (`None`: per miner, as each accepts).
    pub scheme: Option<nicheimage_bittensor::dendrite::Scheme>,
    /// Connection limits and body timeout of the listener.
    pub limits: nicheimage_common::serve::Limits,
    pub counter_path: PathBuf,
    /// Where the on/off choice is remembered.
    pub toggle_path: PathBuf,
}

pub struct Proxy {
    pub settings: Arc<ProxySettings>,
    pub validator: Arc<ValidatorShared>,
    pub keypair: Arc<Keypair>,
    pub chain: Arc<dyn Chain>,
    pub toggle: watch::Receiver<bool>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Remembered {
    enabled: bool,
}

/// The on/off choice saved at `path`, if any.
pub fn remembered_choice(path: &std::path::Path) -> Option<bool> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Remembered>(&b).ok())
        .map(|r| r.enabled)
}

/// Counters are flushed to disk at most this often (and when the listener stops).
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// State shared by the request handlers of one component run.
struct Shared {
    settings: Arc<ProxySettings>,
    validator: Arc<ValidatorShared>,
    /// Idle dendrites, each with its own uuid; a request holds one for its whole life, so no
    /// two calls with one uuid ever overlap (see [`Dendrite::sibling`]). At most one per
    /// concurrent request.
    dendrites: Mutex<Vec<Dendrite>>,
    dendrite: Dendrite,
    http: reqwest::Client,
    verifier: auth::Verifier,
    gate: gate::Gate,
    permits: Semaphore,
    /// Bodies read before their signature is checked, at most this many at a time: forged
    /// requests with fresh headers cannot make the proxy read and hash without bound.
    verifying: Arc<Semaphore>,
    counters: Mutex<(Counters, bool)>,
    report: Mutex<ProxyReport>,
    events: crate::runtime::EventSender,
    chain: Arc<dyn Chain>,
    hotkey: String,
    requests: std::sync::atomic::AtomicU64,
    /// Requests being handled, queued ones included.
    in_flight: std::sync::atomic::AtomicUsize,
}

impl Shared {
    fn take_dendrite(&self) -> Dendrite {
        self.dendrites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| self.dendrite.sibling())
    }

    fn return_dendrite(&self, dendrite: Dendrite) {
        self.dendrites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(dendrite);
    }

    fn lock_report(&self) -> std::sync::MutexGuard<'_, ProxyReport> {
        self.report.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the current report, with today's and all-time counters.
    async fn publish(&self) {
        let report = {
            let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            let mut report = self.lock_report();
            let date = counters::utc_date(nicheimage_bittensor::now_ns() / 1_000_000_000);
            report.today = counters.0.get(&date).cloned().unwrap_or_default();
            report.date = date;
            report.total = counters::DayCounters::default();
            for day in counters.0.values() {
                report.total.add(day);
            }
            report.in_flight = self.in_flight.load(std::sync::atomic::Ordering::SeqCst);
            report.clone()
        };
        self.events.send(Event::Proxy(report)).await;
    }

    fn flush(&self) {
        let snapshot = {
            let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            if !c.1 {
                return;
            }
            c.1 = false;
            c.0.clone()
        };
        if let Err(e) =
            nicheimage_common::jsonfile::save_atomic(&self.settings.counter_path, &snapshot)
        {
            tracing::warn!(error = %e, path = %self.settings.counter_path.display(), "cannot save the proxy counters");
            self.lock_report().last_error = Some(format!(
                "saving {}: {e}",
                self.settings.counter_path.display()
            ));
        }
    }

    /// Asks the owner API for credentials (and possibly the owner's key).
    async fn refresh_credentials(&self) -> Result<(), CredentialsError> {
        let url = &self.settings.owner_api_url;
        if url.is_empty() {
            return Err(CredentialsError::NotConfigured);
        }
        // Also checked at config validation; settings built in code come through here too.
        owner_api::check_url(url, self.settings.allow_insecure_owner_api)?;
        let uid = self
            .chain
            .metagraph(self.settings.netuid)
            .await
            .ok()
            .and_then(|g| {
                g.neurons
                    .iter()
                    .find(|n| n.hotkey == self.hotkey)
                    .map(|n| n.uid)
            });
        let miners = serde_json::to_value(&self.validator.book().uids).unwrap_or_default();
        let credentials = owner_api::fetch(
            &self.http,
            url,
            self.settings.allow_insecure_owner_api,
            self.settings.listen.port(),
            uid,
            miners,
        )
        .await?;
        self.verifier.set_legacy(credentials.legacy);
        if let Some(key) = credentials.owner_key {
            self.verifier.set_owner(key);
        }
        self.lock_report().auth = auth_mode(&self.settings, &self.verifier);
        Ok(())
    }
}

/// Why the proxy has no fresh credentials from the owner API.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no proxy.owner_api_url configured")]
    NotConfigured,
    #[error(transparent)]
    Url(#[from] owner_api::BadOwnerUrl),
    #[error(transparent)]
    Api(#[from] owner_api::OwnerApiError),
}

fn auth_mode(settings: &ProxySettings, verifier: &auth::Verifier) -> String {
    let signed = if verifier.has_owner() {
        "signed requests"
    } else {
        "signed requests (no owner key yet: every request is refused)"
    };
    if settings.legacy_auth {
        format!("{signed} + LEGACY caller-key credentials (insecure)")
    } else {
        signed.to_string()
    }
}

impl Proxy {
    fn remember(&self, enabled: bool) {
        if let Err(e) = nicheimage_common::jsonfile::save_atomic(
            &self.settings.toggle_path,
            &Remembered { enabled },
        ) {
            tracing::warn!(error = %e, "cannot remember the proxy choice");
        }
    }

    /// Serves until the toggle turns off or the component is cancelled; drains in-flight
    /// requests either way. `Ok(true)` when cancelled.
    async fn serve_while_enabled(
        &self,
        ctx: &ComponentContext,
        shared: &Arc<Shared>,
        toggle: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<bool> {
        let listener =
            crate::listen::bind(ctx, self.settings.listen, "the validator proxy").await?;
        let address = listener.local_addr()?.to_string();
        shared.lock_report().listening = Some(address);
        shared.publish().await;
        let stop = ctx.cancel.child_token();
        // The owner is one address sending up to `max_concurrent` requests at once (and more
        // queued): its connections must fit under the per-address limit.
        let mut limits = self.settings.limits;
        limits.max_connections_per_address = limits
            .max_connections_per_address
            .max(self.settings.max_concurrent.saturating_mul(2));
        let server = tokio::spawn(nicheimage_common::serve::serve(
            listener,
            handler::routes(shared.clone()),
            limits,
            stop.clone().cancelled_owned(),
        ));
        // Credentials from the owner API now and then, while serving.
        let refresher = {
            let (shared, stop) = (shared.clone(), stop.clone());
            tokio::spawn(async move {
                if shared.settings.owner_api_url.is_empty() {
                    return;
                }
                loop {
                    if let Err(e) = shared.refresh_credentials().await {
                        tracing::warn!(error = %e, "proxy credentials");
                        shared.lock_report().last_error = Some(e.to_string());
                    }
                    shared.publish().await;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(shared.settings.credentials_refresh) => {}
                    }
                }
            })
        };
        let cancelled = loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => break true,
                changed = toggle.changed() => {
                    if changed.is_err() || !*toggle.borrow_and_update() {
                        break changed.is_err();
                    }
                }
                _ = tokio::time::sleep(FLUSH_EVERY) => {
                    shared.flush();
                    continue;
                }
            }
        };
        stop.cancel();
        refresher.abort();
        let _ = server.await;
        shared.flush();
        shared.lock_report().listening = None;
        Ok(cancelled)
    }
}

impl Component for Proxy {
    fn name(&self) -> &str {
        "proxy"
    }

    fn run(self: Arc<Self>, ctx: ComponentContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            let s = &self.settings;
            let (counters, note) =
                nicheimage_common::jsonfile::load_or_aside::<Counters>(&s.counter_path, "proxy counters");
            let verifier = auth::Verifier::new(s.max_age, s.owner_public_key);
            let mut warnings = Vec::new();
            if s.legacy_auth {
                warnings.push(
                    "proxy.legacy_auth is on: anyone who knows the owner's public key can use this proxy"
                        .to_string(),
                );
            }
            let shared = Arc::new(Shared {
                report: Mutex::new(ProxyReport {
                    auth: auth_mode(s, &verifier),
                    warnings,
                    last_error: note,
                    ..Default::default()
                }),
                settings: s.clone(),
                validator: self.validator.clone(),
                dendrites: Mutex::new(Vec::new()),
                dendrite: Dendrite::new(self.keypair.clone())?.with_scheme(s.scheme),
                http: nicheimage_common::http::client()?,
                verifier,
                gate: gate::Gate::new(s.rate_limit_per_minute, s.unauthenticated_per_minute),
                permits: Semaphore::new(s.max_concurrent.max(1)),
                verifying: Arc::new(Semaphore::new(handler::MAX_UNVERIFIED)),
                counters: Mutex::new((counters, false)),
                events: ctx.events.clone(),
                chain: self.chain.clone(),
                hotkey: self.keypair.ss58().to_string(),
                requests: Default::default(),
                in_flight: Default::default(),
            });
            let mut toggle = self.toggle.clone();
            loop {
                let enabled = *toggle.borrow_and_update();
                shared.lock_report().enabled = enabled;
                self.remember(enabled);
                if enabled {
                    tracing::info!("validator proxy on");
                    if self.serve_while_enabled(&ctx, &shared, &mut toggle).await? {
                        shared.publish().await;
                        return Ok(());
                    }
                    tracing::info!("validator proxy off; in-flight requests drained");
                } else {
                    shared.publish().await;
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return Ok(()),
                        changed = toggle.changed() => if changed.is_err() {
                            ctx.cancel.cancelled().await;
                            return Ok(());
                        }
                    }
                }
            }
        }
        .boxed()
    }
}
