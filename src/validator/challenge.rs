//! A built-in prompt challenge: deterministic for a seed, varied (subject, setting, style,
//! lighting, medium), so a validator needs no external service. A remote prompt service with
//! the seed's JSON is still used when configured.

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

/// splitmix64: a tiny, well-mixed generator so the same seed gives the same prompt everywhere.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[(self.next() % list.len() as u64) as usize]
    }
}

pub fn prompt(seed: u64) -> String {
    let mut r = Mix(seed);
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
