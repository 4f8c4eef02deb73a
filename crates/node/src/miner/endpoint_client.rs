//! The miner's side of the generation endpoint (`--generate_endpoint`, `--info_endpoint`): the
//! seed's JSON over HTTP, so the endpoint may run in this node or on another machine.

use std::time::Duration;

use serde_json::{Value, json};

use nicheimage_bittensor::synapse::ImageGenerating;

/// The endpoint answers with one image (base64) or its info.
const MAX_ANSWER: usize = 32 << 20;

pub struct EndpointClient {
    pub generate_url: String,
    pub info_url: String,
    pub timeout: Duration,
    client: reqwest::Client,
}

impl EndpointClient {
    pub fn new(
        generate_url: &str,
        info_url: &str,
        timeout: Duration,
    ) -> Result<Self, nicheimage_common::http::HttpError> {
        Ok(Self {
            generate_url: generate_url.into(),
            info_url: info_url.into(),
            timeout,
            client: nicheimage_common::http::client()?,
        })
    }

    async fn json(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Value, String> {
        let response = request.timeout(self.timeout).send().await.map_err(|e| {
            if e.is_timeout() {
                format!("{what}: no answer within {} s", self.timeout.as_secs())
            } else {
                format!("{what}: {e}")
            }
        })?;
        let status = response.status();
        let body: Value = nicheimage_common::http::json_capped(response, MAX_ANSWER)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        if !status.is_success() {
            let reason = body
                .get("error")
                .or(body.get("detail"))
                .map(|v| v.to_string())
                .unwrap_or_else(|| body.to_string());
            return Err(format!("{what}: HTTP {status}: {reason}"));
        }
        Ok(body)
    }

    /// The served model's name (`GET /info`).
    pub async fn model_name(&self) -> Result<String, String> {
        let body = self
            .json(self.client.get(&self.info_url), "endpoint /info")
            .await?;
        body.get("model_name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("endpoint /info: no model_name in {body}"))
    }

    /// Generates the synapse's image (`POST /generate`) as a base64 PNG.
    pub async fn generate(&self, synapse: &ImageGenerating) -> Result<String, String> {
        let request = json!({
            "prompt": synapse.prompt,
            "seed": synapse.seed,
            "model_name": synapse.model_name,
            "pipeline_type": synapse.pipeline_type,
            "pipeline_params": synapse.pipeline_params,
            "conditional_image": synapse.conditional_image,
        });
        let body = self
            .json(
                self.client.post(&self.generate_url).json(&request),
                "endpoint /generate",
            )
            .await?;
        body.get("image")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| "endpoint /generate: no image in the answer".to_string())
    }
}
