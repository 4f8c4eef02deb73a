//! Where the miner's images come from: the generation endpoint, or on the devnet a wrapper
//! around it that misbehaves on purpose (`devnet::sabotage`).

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use nicheimage_bittensor::synapse::ImageGenerating;

use super::endpoint_client::EndpointClient;
use nicheimage_common::http::ServiceError;

/// Puts a source in front of the miner's own (the devnet's saboteurs wrap the endpoint).
pub type WrapSource = Box<dyn FnOnce(Arc<dyn ImageSource>) -> Arc<dyn ImageSource>>;

pub trait ImageSource: Send + Sync {
    /// The served model's name.
    fn model_name(&self) -> BoxFuture<'_, Result<String, ServiceError>>;

    /// The synapse's image as a base64 PNG.
    fn generate<'a>(
        &'a self,
        synapse: &'a ImageGenerating,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;

    /// How this source misbehaves on purpose, for the console (`None`: it is honest).
    fn sabotage(&self) -> Option<String> {
        None
    }
}

impl ImageSource for EndpointClient {
    fn model_name(&self) -> BoxFuture<'_, Result<String, ServiceError>> {
        EndpointClient::model_name(self).boxed()
    }

    fn generate<'a>(
        &'a self,
        synapse: &'a ImageGenerating,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        EndpointClient::generate(self, synapse).boxed()
    }
}
