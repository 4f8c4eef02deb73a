//! A built-in prompt challenge: deterministic for a seed, varied (subject, setting, style,
//! lighting, medium), so a validator needs no external service. (The seed's remote prompt
//! service, `validator.challenge_prompt_url`, is not called yet.)

use super::Dice;

const SUBJECTS: &[&str] = &[
    "an old lighthouse",
    "a red fox",
    "a street market",
    "a mountain cabin",
    "a vintage car",
    "a koi pond",
    "an astronaut",
    "a violin maker",
    "a desert caravan",
    "a glass greenhouse",
    "a steam locomotive",
    "a snowy owl",
    "a harbour town",
    "a cathedral interior",
    "a bonsai tree",
    "a fishing boat",
    "a jazz trio",
    "a waterfall",
    "a robot gardener",
    "a bowl of ramen",
];
const SETTINGS: &[&str] = &[
    "at dawn",
    "in the rain",
    "under a starry sky",
    "in autumn",
    "on a foggy morning",
    "at golden hour",
    "in a snowstorm",
    "in a neon-lit city",
    "by the sea",
    "in a quiet forest",
];
const STYLES: &[&str] = &[
    "photorealistic",
    "cinematic",
    "impressionist",
    "art nouveau",
    "studio ghibli style",
    "ukiyo-e",
    "hyperdetailed",
    "minimalist",
    "baroque",
    "retro futurism",
];
const LIGHTING: &[&str] = &[
    "soft light",
    "dramatic rim lighting",
    "volumetric light",
    "backlit",
    "overcast light",
    "candlelight",
    "high contrast",
    "diffuse daylight",
];
const MEDIA: &[&str] = &[
    "oil painting",
    "35mm photograph",
    "watercolor",
    "digital art",
    "charcoal sketch",
    "3d render",
    "gouache",
    "polaroid",
];

pub fn prompt(seed: u64) -> String {
    let mut r = Dice::new(seed);
    format!(
        "{} {}, {}, {}, {}",
        r.pick(SUBJECTS),
        r.pick(SETTINGS),
        r.pick(STYLES),
        r.pick(LIGHTING),
        r.pick(MEDIA)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        assert_eq!(prompt(42), prompt(42));
        let distinct: std::collections::HashSet<String> = (0..200).map(prompt).collect();
        assert!(distinct.len() > 190, "{}", distinct.len());
        assert!(prompt(1).split(", ").count() == 4);
    }
}
