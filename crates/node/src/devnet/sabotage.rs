//! The devnet's deliberately misbehaving miners: they show the reward rules at work.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use nicheimage_bittensor::synapse::ImageGenerating;

use crate::miner::ImageSource;
use nicheimage_common::http::ServiceError;

/// How a devnet miner misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sabotage {
    /// Answers with the image of the next seed (fails the hash comparison).
    WrongSeed,
    /// Waits this long before generating (misses the model's timeout).
    Slow(Duration),
}

impl Sabotage {
    /// In the devnet summary's words.
    pub fn describe(self) -> String {
        match self {
            Sabotage::WrongSeed => "answers with another seed's image".into(),
            Sabotage::Slow(d) => format!("answers after {:.0} s", d.as_secs_f64()),
        }
    }
}

/// An image source that misbehaves as told around an honest one.
pub struct Saboteur {
    pub honest: Arc<dyn ImageSource>,
    pub sabotage: Sabotage,
}

impl ImageSource for Saboteur {
    fn model_name(&self) -> BoxFuture<'_, Result<String, ServiceError>> {
        self.honest.model_name()
    }

    fn generate<'a>(
        &'a self,
        synapse: &'a ImageGenerating,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        async move {
            match self.sabotage {
                Sabotage::WrongSeed => {
                    // Only a sabotaged request is copied: a synapse may carry MBs of image.
                    let wrong = ImageGenerating {
                        seed: synapse.seed.wrapping_add(1),
                        ..synapse.clone()
                    };
                    self.honest.generate(&wrong).await
                }
                Sabotage::Slow(delay) => {
                    tokio::time::sleep(delay).await;
                    self.honest.generate(synapse).await
                }
            }
        }
        .boxed()
    }

    fn sabotage(&self) -> Option<String> {
        Some(format!("{:?}", self.sabotage))
    }
}
