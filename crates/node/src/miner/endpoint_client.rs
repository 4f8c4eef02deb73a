//! The miner's side of the generation endpoint (`--generate_endpoint`, `--info_endpoint`):
//! NicheImage's JSON over HTTP, so the endpoint may run in this node or on another machine.

use std::time::Duration;

use serde_json::{Value, json};

use nicheimage_bittensor::synapse::ImageGenerating;
use nicheimage_common::http::{ServiceError, call_json};

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

    /// The served model's name (`GET /info`).
    pub async fn model_name(&self) -> Result<String, ServiceError> {
        // Path only: the error goes back to the calling validators.
        let service = "endpoint /info";
        let request = self.client.get(&self.info_url);
        let body = call_json(service, request, self.timeout, MAX_ANSWER).await?;
        body.get("model_name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ServiceError::malformed(service, "no model_name in the answer"))
    }

    /// Generates the synapse's image (`POST /generate`) as a base64 PNG.
    pub async fn generate(&self, synapse: &ImageGenerating) -> Result<String, ServiceError> {
        let request = json!({
            "prompt": synapse.prompt,
            "seed": synapse.seed,
            "model_name": synapse.model_name,
            "pipeline_type": synapse.pipeline_type,
            "pipeline_params": synapse.pipeline_params,
            "conditional_image": synapse.conditional_image,
        });
        let service = "endpoint /generate";
        let request = self.client.post(&self.generate_url).json(&request);
        let body = call_json(service, request, self.timeout, MAX_ANSWER).await?;
        body.get("image")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ServiceError::malformed(service, "no image in the answer"))
    }
}
