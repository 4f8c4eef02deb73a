//! The validator neuron: each pass refreshes who serves which model (info synapse to every axon),
//! sends each model's miners, in random batches of 1–5, a txt2img challenge with a fresh seed,
//! has the reward service judge the answers, subtracts the time penalty from the successful
//! ones, keeps the last 10 rewards per uid, and sets weights when the chain allows. Every reward
//! carries its reason; the state is saved atomically after every pass.

pub mod challenge;
pub mod reward_client;
pub mod scores;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value};

use crate::catalogue::{ModelSpec, Pipeline};
pub use crate::dice::Dice;
use crate::runtime::event::{GalleryImage, RoundOutcome, ValidatorReport};
use crate::runtime::event::{RewardReason, Unanswered, WeightsStatus};
use crate::runtime::{Component, ComponentContext, Event};
use nicheimage_bittensor::chain::commit::{self, WeightsMode, Window};
use nicheimage_bittensor::chain::{Chain, ChainError, is_public_unicast, weights};
use nicheimage_bittensor::dendrite::{AxonTarget, Dendrite, Response};
use nicheimage_bittensor::keypair::Keypair;
use nicheimage_bittensor::synapse::ImageGenerating;
use scores::MinerBook;

/// The longest model name a miner's answer may claim (catalogue names are a few words).
pub const MAX_MODEL_NAME_BYTES: usize = 64;

pub struct ValidatorSettings {
    pub netuid: u16,
    /// The catalogue, in the order models are challenged.
    pub models: Vec<ModelSpec>,
    /// Reward service URL; `{model}` is replaced by the model's name.
    pub reward_url: String,
    /// NicheImage's remote prompt service; empty: the built-in generator.
    pub challenge_prompt_url: String,
    /// Where img2img and ControlNet challenges get their conditional image (the owner's image
    /// service, or a reward service of ours at `/challenge/image`); empty: txt2img only.
    pub challenge_image_url: String,
    pub info_timeout: Duration,
    pub fast_loop: Duration,
    pub fast_steps: u64,
    pub slow_loop: Duration,
    pub state_path: PathBuf,
    /// Hash commits waiting for their reveal, with their salts (`weights` commands share it).
    pub commits_path: PathBuf,
    /// Sent with weights: NicheImage's spec version, 10.
    pub version_key: u64,
    pub set_weights: bool,
    /// Dial miners announcing private, loopback or link-local addresses (local subnets only).
    pub dial_private_axons: bool,
    /// How requests to miners are signed (`None`: per miner, as each accepts).
    pub scheme: Option<nicheimage_bittensor::dendrite::Scheme>,
}

pub struct Validator {
    pub settings: ValidatorSettings,
    pub chain: Arc<dyn Chain>,
    pub keypair: Arc<Keypair>,
    pub shared: Arc<ValidatorShared>,
}

/// What the validator knows that the proxy reads (and feeds organic checks back into): the
/// score book and the miners' axons. Locked briefly, never across a network call.
#[derive(Default)]
pub struct ValidatorShared {
    book: Mutex<MinerBook>,
    axons: Mutex<BTreeMap<u16, AxonTarget>>,
    /// What happened to the saved state at load (e.g. a corrupt file moved aside).
    pub load_note: Option<String>,
    /// The weights the chain last accepted from us, by uid.
    weights: Mutex<BTreeMap<u16, u16>>,
    /// Our last timelocked commit, until the chain is seen to have applied it.
    timelocked: Mutex<Option<commit::TimelockedCommit>>,
}

impl ValidatorShared {
    /// The book saved at `path` (empty if missing or corrupt, with the reason kept).
    pub fn load(path: &std::path::Path) -> Self {
        let (book, load_note) = MinerBook::load(path);
        Self {
            book: Mutex::new(book),
            load_note,
            ..Default::default()
        }
    }

    pub fn with_book(book: MinerBook) -> Self {
        Self {
            book: Mutex::new(book),
            ..Default::default()
        }
    }

    pub fn book(&self) -> MutexGuard<'_, MinerBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn axons(&self) -> BTreeMap<u16, AxonTarget> {
        self.axons.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_axons(&self, axons: BTreeMap<u16, AxonTarget>) {
        *self.axons.lock().unwrap_or_else(|p| p.into_inner()) = axons;
    }

    pub fn weights_set(&self) -> BTreeMap<u16, u16> {
        self.weights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The book as the console shows it.
    pub fn miner_rows(&self) -> BTreeMap<u16, crate::runtime::event::MinerRow> {
        let book = self.book();
        book.uids
            .iter()
            .map(|(uid, info)| {
                (
                    *uid,
                    crate::runtime::event::MinerRow {
                        hotkey: info.hotkey.clone(),
                        model: info.model_name.clone(),
                        scores: info.scores.iter().copied().collect(),
                        mean: book.mean(*uid),
                    },
                )
            })
            .collect()
    }
}

/// What one forward pass produced.
pub struct Pass {
    pub outcomes: Vec<RoundOutcome>,
    /// Each judged image, small, with its verdict.
    pub gallery: Vec<GalleryImage>,
}

/// Gallery thumbnails of the answers at `good` (None where an image does not decode), made off
/// the async threads.
async fn thumbnails(
    answers: &[Response<ImageGenerating>],
    good: &[usize],
) -> Vec<Option<nicheimage_common::image::Thumbnail>> {
    let images: Vec<Option<String>> = good
        .iter()
        .map(|i| answers[*i].synapse.image.as_str().map(str::to_string))
        .collect();
    let n = images.len();
    tokio::task::spawn_blocking(move || {
        images
            .iter()
            .map(|b64| {
                let image =
                    nicheimage_common::image::RgbImage::from_base64_png(b64.as_deref()?).ok()?;
                Some(nicheimage_common::image::Thumbnail::of(
                    &image,
                    GALLERY_SIDE,
                ))
            })
            .collect()
    })
    .await
    .unwrap_or_else(|_| vec![None; n])
}

/// Longest side of a gallery thumbnail, in pixels (two pixels per terminal row).
const GALLERY_SIDE: usize = 32;

/// Why a failed call scored 0, in operator words.
fn unanswered<S>(r: &Response<S>) -> Unanswered {
    let message = || nicheimage_common::text::clip(&r.status_message, 200);
    match r.status_code {
        408 => Unanswered::Timeout {
            secs: r.process_time,
        },
        403 => Unanswered::Blacklisted(message()),
        503 => Unanswered::Unreachable,
        401 => Unanswered::SignatureRefused(message()),
        code => Unanswered::Status {
            code,
            message: message(),
        },
    }
}

/// The model's default inference parameters, as synapse `pipeline_params`.
pub fn challenge_params(model: &ModelSpec) -> Map<String, Value> {
    let d = &model.defaults;
    let mut p = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            p.insert(k.into(), v);
        }
    };
    put(
        "num_inference_steps",
        d.num_inference_steps.map(Value::from),
    );
    put("width", d.width.map(Value::from));
    put("height", d.height.map(Value::from));
    put("guidance_scale", d.guidance_scale.map(Value::from));
    put(
        "negative_prompt",
        d.negative_prompt.clone().map(Value::from),
    );
    p
}

impl Validator {
    /// Asks every axon (but ours) what it serves and updates the book.
    async fn refresh_identities(
        &self,
        dendrite: &Dendrite,
    ) -> Result<BTreeMap<u16, AxonTarget>, ChainError> {
        let graph = self.chain.metagraph(self.settings.netuid).await?;
        let hotkeys: BTreeMap<u16, &str> = graph
            .neurons
            .iter()
            .map(|n| (n.uid, n.hotkey.as_str()))
            .collect();
        self.shared
            .book()
            .retain(|uid, hotkey| hotkeys.get(&uid) == Some(&hotkey));
        // Only what a public network should dial: an announced private, loopback or invalid
        // address is skipped (unless this subnet is local), never truncated into one of ours.
        let dial_private = self.settings.dial_private_axons;
        let mut skipped = 0usize;
        let axons: BTreeMap<u16, AxonTarget> = graph
            .neurons
            .iter()
            .filter(|n| n.axon.is_served() && n.hotkey != self.keypair.ss58())
            .filter_map(|n| match n.axon.address() {
                Ok(ip) if dial_private || is_public_unicast(ip) => Some((
                    n.uid,
                    AxonTarget {
                        ip: ip.to_string(),
                        port: n.axon.port,
                        hotkey: n.hotkey.clone(),
                    },
                )),
                _ => {
                    skipped += 1;
                    None
                }
            })
            .collect();
        if skipped > 0 && axons.is_empty() {
            tracing::warn!(
                skipped,
                "no miner dialled: every axon announces a non-public or invalid address (set [validator] dial_private_axons = true on a local subnet)"
            );
        } else if skipped > 0 {
            tracing::debug!(
                skipped,
                "axons announcing a non-public or invalid address were not dialled"
            );
        }
        let mut info = ImageGenerating::default();
        info.request_dict
            .insert("get_miner_info".into(), Value::Bool(true));
        let targets: Vec<AxonTarget> = axons.values().cloned().collect();
        let answers = dendrite
            .call_many(&targets, &info, self.settings.info_timeout)
            .await;
        let mut book = self.shared.book();
        for ((uid, target), answer) in axons.iter().zip(answers) {
            let model = answer
                .is_success()
                .then(|| {
                    answer
                        .synapse
                        .response_dict
                        .get("model_name")
                        .and_then(Value::as_str)
                        // No model is named that long: a longer claim identifies nothing.
                        .filter(|name| name.len() <= MAX_MODEL_NAME_BYTES)
                        .map(str::to_string)
                })
                .flatten();
            book.identify(*uid, &target.hotkey, model.as_deref());
        }
        drop(book);
        self.shared.set_axons(axons.clone());
        Ok(axons)
    }

    /// The prompt for a challenge with `seed`: the remote service's if one is set and answers,
    /// else the built-in one.
    async fn challenge_prompt(&self, client: &reqwest::Client, seed: u64) -> String {
        let built_in = challenge::prompt(seed);
        let url = &self.settings.challenge_prompt_url;
        if url.is_empty() {
            return built_in;
        }
        match challenge::remote_prompt(client, url, &built_in, seed, self.settings.info_timeout)
            .await
        {
            Ok(prompt) => prompt,
            Err(e) => {
                tracing::warn!(error = %e, "using the built-in prompt");
                built_in
            }
        }
    }

    /// Fills an img2img/ControlNet challenge's conditional image from the image service; without
    /// one, the batch is asked txt2img instead (a request without its image is no fair test).
    async fn add_conditional_image(
        &self,
        client: &reqwest::Client,
        challenge: &mut ImageGenerating,
        seed: u64,
    ) {
        let url = &self.settings.challenge_image_url;
        let got = if url.is_empty() {
            None
        } else {
            let timeout = self.settings.info_timeout.max(Duration::from_secs(60));
            Some(challenge::remote_image(client, url, &challenge.prompt, seed, timeout).await)
        };
        match got {
            Some(Ok(image)) => challenge.conditional_image = image,
            None => {
                tracing::warn!(
                    pipeline = %challenge.pipeline_type,
                    "no validator.challenge_image_url; asking txt2img instead"
                );
                challenge.pipeline_type = Pipeline::Txt2img.name().into();
            }
            Some(Err(e)) => {
                tracing::warn!(
                    pipeline = %challenge.pipeline_type,
                    error = %e,
                    "no conditional image; asking txt2img instead"
                );
                challenge.pipeline_type = Pipeline::Txt2img.name().into();
            }
        }
    }

    /// One forward pass: every uid's reward and why, and the judged images for the gallery.
    pub async fn forward(&self, dendrite: &Dendrite, dice: &mut Dice) -> Result<Pass, ChainError> {
        // A pass-level failure: logged by the caller and retried at the next pass.
        let client = nicheimage_common::http::client()
            .map_err(|e| ChainError::Unsupported(e.to_string()))?;
        let axons = self.refresh_identities(dendrite).await?;
        let mut outcomes = Vec::new();
        let mut gallery = Vec::new();
        for model in self
            .settings
            .models
            .iter()
            .filter(|m| m.incentive_weight > 0.0)
        {
            let mut uids: Vec<u16> = self
                .shared
                .book()
                .serving(&model.name)
                .into_iter()
                .filter(|u| axons.contains_key(u))
                .collect();
            if uids.is_empty() {
                continue;
            }
            dice.shuffle(&mut uids);
            let batch_size = 1 + dice.below(5) as usize;
            // NicheImage draws one pipeline type per model and pass.
            let pipeline = model
                .pipelines
                .get(dice.below(model.pipelines.len() as u64) as usize)
                .copied()
                .unwrap_or(Pipeline::Txt2img);
            for batch in uids.chunks(batch_size) {
                let seed = dice.below(1_000_000_000);
                let mut challenge = ImageGenerating {
                    prompt: self.challenge_prompt(&client, seed).await,
                    seed: seed as i64,
                    pipeline_type: pipeline.name().into(),
                    pipeline_params: challenge_params(model),
                    ..Default::default()
                };
                if pipeline != Pipeline::Txt2img {
                    self.add_conditional_image(&client, &mut challenge, seed)
                        .await;
                }
                let targets: Vec<AxonTarget> = batch.iter().map(|u| axons[u].clone()).collect();
                let timeout = Duration::from_secs_f64(model.timeout_secs);
                let answers = dendrite.call_many(&targets, &challenge, timeout).await;
                let good: Vec<usize> = (0..answers.len())
                    .filter(|i| answers[*i].is_success())
                    .collect();
                let verdicts = if good.is_empty() {
                    Ok(Vec::new())
                } else {
                    let images: Vec<&ImageGenerating> =
                        good.iter().map(|i| &answers[*i].synapse).collect();
                    reward_client::judge(
                        &client,
                        &self.settings.reward_url,
                        model,
                        &challenge,
                        &images,
                    )
                    .await
                };
                let verdicts = match verdicts {
                    Ok(v) => v,
                    Err(e) => {
                        // Our reward service failing is not the miners' fault: record nothing.
                        tracing::warn!(model = %model.name, error = %e, "cannot judge a batch");
                        for uid in batch {
                            outcomes.push(RoundOutcome {
                                uid: *uid,
                                model: model.name.clone(),
                                pipeline: Pipeline::parse(&challenge.pipeline_type)
                                    .unwrap_or(pipeline),
                                reward: None,
                                reason: RewardReason::NotJudged(e.to_string()),
                                latency_ms: None,
                            });
                        }
                        continue;
                    }
                };
                let mut thumbnails = thumbnails(&answers, &good).await;
                for (i, (uid, answer)) in batch.iter().zip(&answers).enumerate() {
                    let judged = good.iter().position(|g| *g == i);
                    let latency_ms = (answer.process_time * 1000.0) as u64;
                    let (reward, reason) = match judged {
                        Some(k) => {
                            let (raw, verdict) = &verdicts[k];
                            let reward =
                                scores::penalised(*raw, answer.process_time, model.timeout_secs);
                            let reason = RewardReason::Judged {
                                verdict: verdict.clone(),
                                secs: answer.process_time,
                                reward,
                            };
                            (reward, reason)
                        }
                        None => (0.0, RewardReason::Unanswered(unanswered(answer))),
                    };
                    self.shared.book().record(*uid, reward);
                    if let Some(thumbnail) = judged.and_then(|k| thumbnails[k].take()) {
                        gallery.push(GalleryImage {
                            unix_ms: crate::runtime::state::unix_ms_now(),
                            uid: *uid,
                            model: model.name.clone(),
                            prompt: challenge.prompt.clone(),
                            seed: challenge.seed,
                            latency_ms,
                            reward,
                            reason: reason.clone(),
                            thumbnail,
                        });
                    }
                    outcomes.push(RoundOutcome {
                        uid: *uid,
                        model: model.name.clone(),
                        pipeline: Pipeline::parse(&challenge.pipeline_type).unwrap_or(pipeline),
                        reward: Some(reward),
                        reason,
                        latency_ms: Some(latency_ms),
                    });
                }
            }
        }
        Ok(Pass { outcomes, gallery })
    }

    /// The book's final scores under the catalogue's incentive shares.
    pub fn final_scores(&self) -> BTreeMap<u16, f64> {
        let incentive: BTreeMap<String, f64> = self
            .settings
            .models
            .iter()
            .map(|m| (m.name.clone(), m.incentive_weight))
            .collect();
        self.shared.book().final_scores(&incentive)
    }

    /// The first block at which the chain accepts our weights again: our last update plus the
    /// subnet's weights rate limit (`None` while our hotkey is not registered).
    pub async fn next_weights_block(&self) -> Result<Option<u64>, ChainError> {
        let netuid = self.settings.netuid;
        let limit = self.chain.hyperparams(netuid).await?.weights_rate_limit;
        let graph = self.chain.metagraph(netuid).await?;
        Ok(graph
            .neurons
            .iter()
            .find(|n| n.hotkey == self.keypair.ss58())
            .map(|n| n.last_update + limit))
    }

    /// Normalised final scores as u16 weights on chain, once the rate limit allows; what
    /// happened in words, or the chain's refusal by name.
    pub async fn set_weights(&self) -> Result<WeightsStatus, ChainError> {
        let scores = self.final_scores();
        let uids: Vec<u16> = scores.keys().copied().collect();
        let values: Vec<f32> = scores.values().map(|s| *s as f32).collect();
        let (uids, weights) = match weights::normalize_for_emit(&uids, &values) {
            Ok((u, _)) if u.is_empty() => {
                return Ok(WeightsStatus::AllZero);
            }
            Ok(pair) => pair,
            Err(e) => return Ok(WeightsStatus::Unweighable(e.to_string())),
        };
        let block = self.chain.block().await?;
        if let Some(said) = self.timelocked_landed(block).await? {
            return Ok(said);
        }
        if let Some(next) = self.next_weights_block().await?
            && block < next
        {
            return Ok(WeightsStatus::RateLimited { next, now: block });
        }
        let netuid = self.settings.netuid;
        match self.chain.weights_mode(netuid).await? {
            WeightsMode::Plain { .. } => {}
            WeightsMode::HashCommit => return self.commit_or_reveal(block, uids, weights).await,
            WeightsMode::Timelocked { .. } => {
                let c = self
                    .chain
                    .commit_timelocked(
                        &self.keypair,
                        netuid,
                        uids.clone(),
                        weights.clone(),
                        self.settings.version_key,
                    )
                    .await?;
                let said = waiting_for(&c);
                *self
                    .shared
                    .timelocked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(c);
                return Ok(said);
            }
        }
        self.chain
            .set_weights(
                &self.keypair,
                netuid,
                uids.clone(),
                weights.clone(),
                self.settings.version_key,
            )
            .await?;
        self.remember_weights(&uids, &weights);
        Ok(WeightsStatus::Set {
            block,
            uids: uids.len(),
        })
    }

    /// A timelocked commit in flight: while its reveal epoch has not ended, waiting (or applied,
    /// said once); after it, applied or dropped by the chain, said once; `None` when no commit
    /// is in flight. Judged by the chain's epochs, not by blocks, so an epoch that comes early
    /// or late moves the verdict as it moves the reveal.
    async fn timelocked_landed(&self, _block: u64) -> Result<Option<WeightsStatus>, ChainError> {
        let pending = self
            .shared
            .timelocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(c) = pending else {
            return Ok(None);
        };
        let epoch = self.chain.epoch(c.netuid).await?;
        // The epoch a block after the head is judged in: past the reveal epoch, the chain
        // has revealed the commit or deleted it.
        let ended = epoch.epoch_before_coinbase(epoch.block.saturating_add(1)) > c.reveal_epoch;
        let graph = self.chain.metagraph(c.netuid).await?;
        let updated = graph
            .by_hotkey(self.keypair.ss58())
            .map_or(0, |n| n.last_update);
        // Under commit-reveal only a reveal moves our last update, wherever the epoch fell.
        let landed = updated > c.commit_block;
        if !landed && !ended {
            return Ok(Some(waiting_for(&c)));
        }
        *self
            .shared
            .timelocked
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        if landed {
            self.remember_weights(&c.uids, &c.weights);
            Ok(Some(WeightsStatus::ChainRevealed {
                block: updated,
                uids: c.uids.len(),
                commit_block: c.commit_block,
                reveal_epoch: c.reveal_epoch,
            }))
        } else {
            Ok(Some(WeightsStatus::Dropped {
                commit_block: c.commit_block,
                reveal_epoch: c.reveal_epoch,
                reveal_round: c.reveal_round,
            }))
        }
    }

    /// Our commits waiting for their reveal (the kept hash commits of this subnet and the
    /// timelocked one in flight).
    pub fn kept_commits(&self) -> Vec<commit::KeptCommit> {
        let s = &self.settings;
        let mut kept: Vec<_> = commit::load_pending(&s.commits_path)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.netuid == s.netuid)
            .map(commit::KeptCommit::Hash)
            .collect();
        if let Some(c) = self
            .shared
            .timelocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            kept.push(commit::KeptCommit::Timelocked(c));
        }
        kept
    }

    fn remember_weights(&self, uids: &[u16], weights: &[u16]) {
        *self
            .shared
            .weights
            .lock()
            .unwrap_or_else(|p| p.into_inner()) =
            uids.iter().copied().zip(weights.iter().copied()).collect();
    }

    /// Under hash commit-reveal: reveals a kept commit whose window is open, else waits for the
    /// one pending, else commits these weights (the salt kept in `commits_path` as soon as the
    /// chain holds the commit).
    async fn commit_or_reveal(
        &self,
        block: u64,
        uids: Vec<u16>,
        weights: Vec<u16>,
    ) -> Result<WeightsStatus, ChainError> {
        let s = &self.settings;
        let kept = commit::load_pending(&s.commits_path)
            .map_err(|e| ChainError::Unsupported(e.to_string()))?;
        let (mine, others): (Vec<_>, Vec<_>) = kept.into_iter().partition(|c| c.netuid == s.netuid);
        // On a dynamic-tempo chain the window is an epoch: judged by the chain's epoch state.
        let epoch = match mine.iter().any(|c| c.reveal_epoch.is_some()) {
            true => Some(self.chain.epoch(s.netuid).await?),
            false => None,
        };
        let window = |c: &commit::PendingCommit| {
            c.window_at(epoch.as_ref())
                .unwrap_or_else(|| c.window(block))
        };
        // Past their window, commits are spent: the chain drops them.
        let (expired, live): (Vec<_>, Vec<_>) =
            mine.into_iter().partition(|c| window(c) == Window::Expired);
        for c in &expired {
            tracing::warn!(hash = %c.hash, last = c.last_reveal_block, "a weights commit expired unrevealed");
        }
        let save = |live: &[commit::PendingCommit]| {
            let all: Vec<_> = others.iter().chain(live).cloned().collect();
            commit::save_pending(&s.commits_path, &all)
                .map_err(|e| ChainError::Unsupported(e.to_string()))
        };
        if let Some(open) = live.iter().position(|c| window(c) == Window::Open) {
            let c = live[open].clone();
            let result = self.chain.reveal_weights(&self.keypair, &c).await;
            let mut rest = live;
            let spent = match &result {
                Ok(()) => true,
                // Refused for good (expired, not matching, not found): the commit is spent.
                Err(e) => e.refusal().is_some_and(|name| name != "RevealTooEarly"),
            };
            if spent {
                rest.remove(open);
            }
            save(&rest)?;
            result?;
            self.remember_weights(&c.uids, &c.weights);
            return Ok(WeightsStatus::Revealed {
                block,
                uids: c.uids.len(),
                commit_block: c.commit_block,
            });
        }
        if let Some(c) = live.first() {
            save(&live)?;
            return Ok(committed(c));
        }
        let c = self
            .chain
            .commit_weights(&self.keypair, s.netuid, uids, weights, s.version_key)
            .await?;
        let said = committed(&c);
        save(&[c])?;
        Ok(said)
    }
}

/// A timelocked commit waiting for its reveal.
fn waiting_for(c: &commit::TimelockedCommit) -> WeightsStatus {
    WeightsStatus::Timelocked {
        commit_block: c.commit_block,
        commit_epoch: c.commit_epoch,
        reveal_round: c.reveal_round,
        reveal_epoch: c.reveal_epoch,
        reveal_block: c.reveal_block,
    }
}

/// A hash commit waiting for its window.
fn committed(c: &commit::PendingCommit) -> WeightsStatus {
    WeightsStatus::Committed {
        commit_block: c.commit_block,
        first_reveal_block: c.first_reveal_block,
        last_reveal_block: c.last_reveal_block,
    }
}

impl Component for Validator {
    fn name(&self) -> &str {
        "validator"
    }

    fn run(self: Arc<Self>, ctx: ComponentContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            let s = &self.settings;
            let dendrite = Dendrite::new(self.keypair.clone())?.with_scheme(s.scheme);
            let mut report = ValidatorReport {
                timeouts: s
                    .models
                    .iter()
                    .map(|m| (m.name.clone(), m.timeout_secs))
                    .collect(),
                hotkey: self.keypair.ss58().to_string(),
                step: self.shared.book().step,
                state_note: self.shared.load_note.clone(),
                ..Default::default()
            };
            if let Some(n) = &report.state_note {
                tracing::warn!("{n}");
            }
            let mut dice = Dice::new(nicheimage_bittensor::now_ns());
            loop {
                // A pass cut by shutdown is dropped: the state on disk is the last whole pass.
                let pass = tokio::select! {
                    _ = ctx.cancel.cancelled() => return Ok(()),
                    pass = self.forward(&dendrite, &mut dice) => pass,
                };
                match pass {
                    Ok(pass) => {
                        for image in pass.gallery {
                            ctx.events.send(Event::Gallery(image)).await;
                        }
                        report.last_round = pass.outcomes;
                        report.last_error = None;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "forward pass failed");
                        report.last_error = Some(e.to_string());
                    }
                }
                if s.set_weights && self.shared.book().step > 0 {
                    report.weights = Some(match self.set_weights().await {
                        Ok(done) => done,
                        Err(e) => {
                            tracing::warn!(error = %e, "set_weights");
                            WeightsStatus::failed(&e)
                        }
                    });
                    report.next_weights_block = self.next_weights_block().await.ok().flatten();
                    report.commits = self.kept_commits();
                }
                // Snapshot under the lock, write outside it.
                let book = {
                    let mut book = self.shared.book();
                    book.step += 1;
                    book.clone()
                };
                if let Err(e) = book.save(&s.state_path) {
                    tracing::warn!(error = %e, "cannot save the validator state");
                    report.last_error = Some(format!("saving {}: {e}", s.state_path.display()));
                }
                report.step = book.step;
                report.scores = self.final_scores();
                report.miners = self.shared.miner_rows();
                report.weights_set = self.shared.weights_set();
                ctx.events.send(Event::Validator(report.clone())).await;
                let wait = if book.step <= s.fast_steps {
                    s.fast_loop
                } else {
                    s.slow_loop
                };
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        .boxed()
    }
}
