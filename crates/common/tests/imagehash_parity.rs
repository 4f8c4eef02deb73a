//! `imagehash.average_hash` parity on varied images (sizes, odd aspect ratios, gray, RGBA and
//! palette PNGs, black and flat images, a near-threshold pair) at hash sizes 6, 8 and 16, against
//! the hashes the pinned Pillow + ImageHash computed (`scripts/parity/imagehash_fixtures.py`).

use std::path::PathBuf;

use nicheimage_common::image::RgbImage;
use nicheimage_common::imagehash::{average_hash, distance};

fn fixtures() -> PathBuf {
    nicheimage_test_support::root().join("tests/fixtures/imagehash")
}

/// imagehash's hex: the bits most-significant first, four per digit.
fn bits(hex: &str) -> Vec<bool> {
    hex.chars()
        .flat_map(|c| {
            let v = c.to_digit(16).expect("hex digit");
            (0..4).rev().map(move |i| (v >> i) & 1 == 1)
        })
        .collect()
}

#[test]
fn average_hash_matches_imagehash_on_varied_images() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("hashes.json")).unwrap())
            .unwrap();
    let cases = manifest.as_object().unwrap();
    assert!(cases.len() >= 10);
    for (name, sizes) in cases {
        let png = std::fs::read(fixtures().join(format!("{name}.png"))).unwrap();
        let image = RgbImage::from_png(&png).unwrap();
        for (size, hex) in sizes.as_object().unwrap() {
            let size: usize = size.parse().unwrap();
            let expected = bits(hex.as_str().unwrap());
            assert_eq!(expected.len(), size * size);
            assert_eq!(
                average_hash(&image, size),
                expected,
                "{name} at hash size {size}"
            );
        }
    }
}

#[test]
fn the_near_threshold_pair_is_close_but_not_identical_input() {
    let load = |n: &str| {
        RgbImage::from_png(&std::fs::read(fixtures().join(format!("{n}.png"))).unwrap()).unwrap()
    };
    let (a, b) = (load("near_a_128"), load("near_b_128"));
    assert_ne!(a, b);
    assert!(distance(&average_hash(&a, 8), &average_hash(&b, 8)) <= 6);
}
