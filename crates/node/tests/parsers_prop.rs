//! Property tests of the parsers that read input from strangers: the image decoder, synapse
//! headers and bodies (axon and dendrite side), `POST /generate` bodies, reward batches and
//! proxy requests. Each property says "never panics" at least, and where the input is valid,
//! what must come out of it.
//!
//! Case counts follow `PROPTEST_CASES` (1024 when unset); the slower properties (those that go
//! over loopback HTTP or resize images) run a fraction of it. CI runs the default; a longer
//! run is `PROPTEST_CASES=20000 cargo test -p nicheimage-node --test parsers_prop`.
//!
//! Decoding is measured with a counting allocator (per thread): an image that the limits
//! refuse must be refused before its pixels are allocated.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cases::{arb_mutation, mutate, run};
use nicheimage_test_support::cases;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::FutureExt;
use futures::future::BoxFuture;
use nicheimage_bittensor::axon::{AxonBuilder, Caller, Handler, RunningAxon};
use nicheimage_bittensor::dendrite::{AxonTarget, Dendrite};
use nicheimage_bittensor::keypair::{self, Keypair};
use nicheimage_bittensor::nonce::NonceTracker;
use nicheimage_bittensor::synapse::{self, Envelope, ImageGenerating, TerminalInfo};
use nicheimage_bittensor::{PROTOCOL_VERSION, now_ns, ss58};
use nicheimage_common::image::{self as img, DecodeLimits, ImageError, RgbImage};
use nicheimage_node::catalogue::{ModelSpec, catalogue};
use nicheimage_node::endpoint::request::{self, MAX_STEPS};
use nicheimage_node::proxy::auth::{self, AuthError, Verifier};
use nicheimage_node::reward::judge::{self, Reference, Verdict};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// A counting allocator: live bytes and their peak, per thread.

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + bytes as i64;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get() - bytes as i64));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as old + new for the moment of the copy: an upper bound.
            grew(new_size);
            shrank(layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `f`'s result and the most bytes it had allocated at once on this thread (its result
/// included).
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    let peak = PEAK.with(Cell::get) - start;
    (out, peak.max(0) as u64)
}

// ---------------------------------------------------------------------------------------------
// Shared helpers.

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn models() -> &'static Vec<ModelSpec> {
    static MODELS: OnceLock<Vec<ModelSpec>> = OnceLock::new();
    MODELS.get_or_init(|| {
        let built_in: Vec<ModelSpec> = catalogue(&Default::default())
            .unwrap()
            .into_values()
            .collect();
        // Conditional images are resized to the condition resolution (512/768 short side);
        // copies with a 64-pixel one keep the img2img/ControlNet cases cheap in a debug build.
        let small: Vec<ModelSpec> = built_in
            .iter()
            .map(|m| ModelSpec {
                name: format!("{}-small-condition", m.name),
                condition_resolution: Some(64),
                ..m.clone()
            })
            .collect();
        built_in.into_iter().chain(small).collect()
    })
}

/// The small-condition models only (cheap to feed images).
fn small_models() -> Vec<ModelSpec> {
    models()
        .iter()
        .filter(|m| m.condition_resolution == Some(64))
        .cloned()
        .collect()
}

fn arb_image(max_side: usize) -> impl Strategy<Value = RgbImage> {
    (1..=max_side, 1..=max_side).prop_flat_map(|(w, h)| {
        prop::collection::vec(any::<u8>(), w * h * 3)
            .prop_map(move |data| RgbImage::new(w, h, data).unwrap())
    })
}

fn png_of(image: &RgbImage) -> Vec<u8> {
    image.to_png().unwrap()
}

/// A PNG of another colour type / bit depth, written with the `png` crate directly.
fn png_raw(w: u32, h: u32, color: png::ColorType, depth: png::BitDepth, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(color);
        encoder.set_depth(depth);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(data).unwrap();
    }
    out
}

fn jpeg_of(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(
            &image.data,
            image.width as u32,
            image.height as u32,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn webp_of(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .encode(
            &image.data,
            image.width as u32,
            image.height as u32,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Rewrites a PNG's IHDR width and height and recomputes its CRC, so the lie is well formed.
fn with_ihdr_size(png: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = png.to_vec();
    assert_eq!(&out[12..16], b"IHDR");
    out[16..20].copy_from_slice(&width.to_be_bytes());
    out[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&out[12..29]);
    out[29..33].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The issue's 74-byte attack: a 1×1 PNG whose IHDR claims 200000×200000.
fn lying_png() -> Vec<u8> {
    let one = RgbImage::new(1, 1, vec![200, 10, 10]).unwrap();
    with_ihdr_size(&png_of(&one), 200_000, 200_000)
}

/// Rewrites a baseline JPEG's SOF0 height and width (walking the header's segments).
fn with_sof_size(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let mut at = 2;
    while out[at] == 0xFF && out[at + 1] != 0xC0 {
        at += 2 + usize::from(u16::from_be_bytes([out[at + 2], out[at + 3]]));
    }
    assert_eq!(out[at..at + 2], [0xFF, 0xC0], "a baseline JPEG has SOF0");
    out[at + 5..at + 7].copy_from_slice(&height.to_be_bytes());
    out[at + 7..at + 9].copy_from_slice(&width.to_be_bytes());
    out
}

/// Small limits for the decoder properties, so a budget overrun shows at once.
const TEST_LIMITS: DecodeLimits = DecodeLimits {
    max_width: 256,
    max_height: 256,
    max_encoded_bytes: 1 << 20,
};

/// What decoding under `limits` may allocate at once: the largest allowed image at 8 bytes a
/// pixel (the frame buffer at up to 4 bytes a pixel plus its RGB copy) and 16 MiB of tables
/// and zlib state. A refusal by header costs far less (see `REFUSAL_BUDGET`).
fn budget(limits: &DecodeLimits) -> u64 {
    u64::from(limits.max_width) * u64::from(limits.max_height) * 8 + (16 << 20)
}

/// What refusing an image by its header may allocate.
const REFUSAL_BUDGET: u64 = 4 << 20;

/// Decodes under `limits` and checks the bounds every outcome must keep.
fn decode_checked(bytes: &[u8], limits: &DecodeLimits) -> Result<Option<RgbImage>, TestCaseError> {
    let started = Instant::now();
    let (result, peak) = peak_of(|| img::decode(bytes, limits));
    let took = started.elapsed();
    prop_assert!(
        peak <= budget(limits),
        "decoding {} bytes allocated {peak} bytes at once (budget {})",
        bytes.len(),
        budget(limits)
    );
    prop_assert!(took < Duration::from_secs(5), "decoding took {took:?}");
    match result {
        Ok(image) => {
            prop_assert!(image.width >= 1 && image.height >= 1);
            prop_assert!(image.width <= limits.max_width as usize);
            prop_assert!(image.height <= limits.max_height as usize);
            prop_assert_eq!(image.data.len(), image.width * image.height * 3);
            Ok(Some(image))
        }
        Err(ImageError::TooLarge { .. }) => {
            prop_assert!(
                peak <= REFUSAL_BUDGET,
                "a refusal by size allocated {peak} bytes"
            );
            Ok(None)
        }
        Err(_) => Ok(None),
    }
}

/// Arbitrary JSON, weighted towards the keys and numbers the parsers care about.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        weird_number(),
        weird_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(arb_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const KEYS: &[&str] = &[
    "prompt",
    "seed",
    "pipeline_type",
    "pipeline_params",
    "conditional_image",
    "num_inference_steps",
    "width",
    "height",
    "guidance_scale",
    "negative_prompt",
    "strength",
    "controlnet_conditioning_scale",
    "model_name",
    "image",
    "miner_data",
    "base_data",
    "payload",
    "miner_uid",
    "authorization",
    "recheck",
    "name",
    "timeout",
    "total_size",
    "header_size",
    "dendrite",
    "axon",
    "computed_body_hash",
    "required_hash_fields",
    "status_code",
    "status_message",
    "process_time",
    "ip",
    "port",
    "version",
    "nonce",
    "uuid",
    "hotkey",
    "signature",
    "request_dict",
    "response_dict",
];

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-z_]{0,12}",
        1 => ".{0,8}",
    ]
}

/// Numbers at the edges of every integer and float type the parsers convert to.
fn weird_number() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!(0),
        json!(-1),
        json!(1),
        json!(7),
        json!(8),
        json!(512),
        json!(1024),
        json!(2048),
        json!(4096),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(u32::MAX),
        json!(u64::from(u32::MAX) + 1),
        json!(u64::from(u32::MAX) + 9),
        json!(i64::MAX as u64 + 1),
        json!(0.5),
        json!(-0.0),
        json!(1e-300),
        json!(1e308),
        json!(-1e308),
        json!(f64::MAX),
        json!(f64::MIN_POSITIVE),
        json!(50.000001),
        json!(512.0),
    ])
}

/// Strings that look like numbers, or like nothing.
fn weird_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "Infinity",
            "1e999",
            "-1",
            "0",
            "512",
            " 512 ",
            "0x10",
            "+5",
            "1_000",
            "18446744073709551616",
            "9223372036854775808",
            "-9223372036854775809",
            "txt2img",
            "img2img",
            "controlnet_txt2img",
            "\u{0}",
            "\u{feff}",
        ])
        .prop_map(str::to_string),
        ".{0,16}",
    ]
}

fn small_b64_image() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => arb_image(12).prop_map(|i| B64.encode(png_of(&i))),
        1 => arb_image(8).prop_map(|i| B64.encode(jpeg_of(&i))),
        1 => arb_image(8).prop_map(|i| B64.encode(webp_of(&i))),
    ]
}

/// base64 texts an attacker might send as an image.
fn hostile_b64_image() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => small_b64_image(),
        2 => (arb_image(8), prop::collection::vec(arb_mutation(), 1..4)).prop_map(|(i, ms)| {
            let mut bytes = png_of(&i);
            for m in &ms {
                mutate(&mut bytes, m);
            }
            B64.encode(bytes)
        }),
        1 => Just(B64.encode(lying_png())),
        1 => (1u32..=u32::MAX, 1u32..=u32::MAX).prop_map(|(w, h)| {
            let one = RgbImage::new(1, 1, vec![1, 2, 3]).unwrap();
            B64.encode(with_ihdr_size(&png_of(&one), w, h))
        }),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| B64.encode(b)),
        1 => ".{0,24}",
        1 => Just(String::new()),
    ]
}

// ---------------------------------------------------------------------------------------------
// 1. The image decoder.

#[test]
fn the_counting_allocator_sees_allocations() {
    // The budgets below would be vacuous if it did not.
    let (v, peak) = peak_of(|| vec![0u8; 10 << 20]);
    assert!(peak >= 10 << 20, "{peak}");
    drop(v);
    let (_, peak) = peak_of(|| std::hint::black_box(vec![1u8; 1 << 10]).len());
    assert!((1 << 10..1 << 20).contains(&peak), "{peak}");
}

#[test]
fn decoder_arbitrary_bytes_never_panic() {
    let magic: Vec<Vec<u8>> = vec![
        vec![],
        b"\x89PNG\r\n\x1a\n".to_vec(),
        vec![0xFF, 0xD8, 0xFF],
        b"RIFF\0\0\0\0WEBP".to_vec(),
    ];
    run(
        1,
        (
            prop::sample::select(magic),
            prop::collection::vec(any::<u8>(), 0..512),
        ),
        |(head, tail)| {
            let bytes: Vec<u8> = head.into_iter().chain(tail).collect();
            decode_checked(&bytes, &TEST_LIMITS)?;
            decode_checked(&bytes, &DecodeLimits::default())?;
            // base64 of it, and the text itself as base64.
            let _ = img::decode_base64(&B64.encode(&bytes), &TEST_LIMITS);
            let _ = img::decode_base64(&String::from_utf8_lossy(&bytes), &TEST_LIMITS);
            Ok(())
        },
    );
}

#[test]
fn decoder_mutated_images_never_panic_and_stay_in_budget() {
    let encoded = prop_oneof![
        3 => arb_image(24).prop_map(|i| png_of(&i)),
        1 => arb_image(16).prop_map(|i| jpeg_of(&i)),
        1 => arb_image(16).prop_map(|i| webp_of(&i)),
    ];
    run(
        1,
        (encoded, prop::collection::vec(arb_mutation(), 1..6)),
        |(mut bytes, mutations)| {
            for m in &mutations {
                mutate(&mut bytes, m);
            }
            decode_checked(&bytes, &TEST_LIMITS)?;
            Ok(())
        },
    );
}

#[test]
fn decoder_refuses_lying_png_headers_before_allocating() {
    let size = prop_oneof![
        1 => Just((200_000u32, 200_000u32)),
        2 => (0u32..=u32::MAX, 0u32..=u32::MAX),
        2 => (257u32..100_000, 1u32..=256),
        2 => (1u32..=256, 257u32..100_000),
    ];
    let kind = prop::sample::select(vec![
        (png::ColorType::Rgb, png::BitDepth::Eight),
        (png::ColorType::Rgba, png::BitDepth::Sixteen),
        (png::ColorType::Grayscale, png::BitDepth::One),
    ]);
    run(1, (size, kind), |((w, h), (color, depth))| {
        let channels = match color {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            _ => 1,
        };
        let bytes_per_sample = if depth == png::BitDepth::Sixteen {
            2
        } else {
            1
        };
        let data = vec![0x5a; 4 * 4 * channels * bytes_per_sample];
        let png = if depth == png::BitDepth::One {
            png_raw(4, 4, color, depth, &[0xa0; 4])
        } else {
            png_raw(4, 4, color, depth, &data)
        };
        let liar = with_ihdr_size(&png, w, h);
        let started = Instant::now();
        let (result, peak) = peak_of(|| img::decode(&liar, &TEST_LIMITS));
        let took = started.elapsed();
        if w > TEST_LIMITS.max_width || h > TEST_LIMITS.max_height {
            prop_assert!(
                matches!(result, Err(ImageError::TooLarge { .. }))
                    // The png crate refuses sides over 2^31 and zero sides itself.
                    || w == 0 || h == 0 || w > (1 << 31) || h > (1 << 31),
                "{w}x{h}: {result:?}"
            );
            prop_assert!(
                peak <= REFUSAL_BUDGET,
                "{w}x{h}: refused after {peak} bytes"
            );
        } else {
            prop_assert!(peak <= budget(&TEST_LIMITS), "{w}x{h}: {peak} bytes");
        }
        prop_assert!(took < Duration::from_secs(2), "{w}x{h}: took {took:?}");
        Ok(())
    });
}

#[test]
fn decoder_refuses_lying_jpeg_headers_before_allocating() {
    run(
        2,
        (arb_image(16), 257u16..=u16::MAX, 1u16..=u16::MAX),
        |(image, w, h)| {
            let liar = with_sof_size(&jpeg_of(&image), w, h);
            let (result, peak) = peak_of(|| img::decode(&liar, &TEST_LIMITS));
            prop_assert!(
                matches!(result, Err(ImageError::TooLarge { .. })),
                "{w}x{h}: {result:?}"
            );
            prop_assert!(
                peak <= REFUSAL_BUDGET,
                "{w}x{h}: refused after {peak} bytes"
            );
            Ok(())
        },
    );
}

#[test]
fn the_issues_74_byte_png_is_refused_by_every_entry_point() {
    let liar = lying_png();
    assert!(liar.len() <= 80, "{} bytes", liar.len());
    let started = Instant::now();
    let (result, peak) = peak_of(|| img::decode(&liar, &DecodeLimits::default()));
    assert!(
        matches!(result, Err(ImageError::TooLarge { .. })),
        "{result:?}"
    );
    assert!(peak <= REFUSAL_BUDGET, "{peak} bytes");
    let (result, peak) = peak_of(|| RgbImage::from_png(&liar));
    assert!(
        result.is_err() && peak <= REFUSAL_BUDGET,
        "{result:?} {peak}"
    );
    let (result, peak) = peak_of(|| RgbImage::from_base64_png(&B64.encode(&liar)));
    assert!(
        result.is_err() && peak <= REFUSAL_BUDGET,
        "{result:?} {peak}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_decompression_bomb_is_refused_before_inflating() {
    // 6000×6000 one-bit gray: 4.5 MB of zero rows that deflate to a few KB, 108 MB as RGB.
    let (w, h) = (6000u32, 6000u32);
    let bomb = png_raw(
        w,
        h,
        png::ColorType::Grayscale,
        png::BitDepth::One,
        &vec![0; (w as usize).div_ceil(8) * h as usize],
    );
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let started = Instant::now();
    let (result, peak) = peak_of(|| img::decode(&bomb, &DecodeLimits::default()));
    assert!(
        matches!(result, Err(ImageError::TooLarge { .. })),
        "{result:?}"
    );
    assert!(peak <= REFUSAL_BUDGET, "{peak} bytes");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn decoder_round_trips_valid_images() {
    run(1, arb_image(48), |image| {
        let decoded = decode_checked(&png_of(&image), &TEST_LIMITS)?;
        prop_assert_eq!(decoded.as_ref(), Some(&image));
        let b64 = image.to_base64_png().unwrap();
        prop_assert_eq!(
            img::decode_base64(&b64, &TEST_LIMITS).ok(),
            Some(image.clone())
        );
        // WebP lossless is exact too; JPEG keeps the size.
        prop_assert_eq!(
            decode_checked(&webp_of(&image), &TEST_LIMITS)?,
            Some(image.clone())
        );
        let jpeg = decode_checked(&jpeg_of(&image), &TEST_LIMITS)?.expect("a JPEG decodes");
        prop_assert_eq!((jpeg.width, jpeg.height), (image.width, image.height));
        Ok(())
    });
}

#[test]
fn decoder_spreads_other_png_colour_types_to_rgb() {
    run(
        1,
        (1usize..=24, 1usize..=24)
            .prop_flat_map(|(w, h)| (Just((w, h)), prop::collection::vec(any::<u8>(), w * h * 8))),
        |((w, h), samples)| {
            let n = w * h;
            let (wu, hu) = (w as u32, h as u32);
            // Gray, gray + alpha, RGBA: gray spread to RGB, alpha dropped.
            for (color, channels) in [
                (png::ColorType::Grayscale, 1),
                (png::ColorType::GrayscaleAlpha, 2),
                (png::ColorType::Rgba, 4),
            ] {
                let raw = &samples[..channels * n];
                let want: Vec<u8> = raw
                    .chunks(channels)
                    .flat_map(|p| {
                        if channels < 3 {
                            [p[0]; 3]
                        } else {
                            [p[0], p[1], p[2]]
                        }
                    })
                    .collect();
                let png = png_raw(wu, hu, color, png::BitDepth::Eight, raw);
                let got = decode_checked(&png, &TEST_LIMITS)?;
                prop_assert_eq!(got.map(|i| i.data), Some(want));
            }
            // 16-bit RGB: the high byte of each sample.
            let rgb16 = &samples[..6 * n];
            let want: Vec<u8> = rgb16.chunks(2).map(|s| s[0]).collect();
            let got = decode_checked(
                &png_raw(wu, hu, png::ColorType::Rgb, png::BitDepth::Sixteen, rgb16),
                &TEST_LIMITS,
            )?;
            prop_assert_eq!(got.map(|i| i.data), Some(want));
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Synapse headers and bodies.

fn arb_header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (
            prop::sample::select(vec!["dendrite", "axon", "", "Dendrite"]),
            prop::sample::select(synapse::TERMINAL_FIELDS.to_vec()),
        )
            .prop_map(|(side, f)| format!("bt_header_{side}_{f}")),
        1 => prop::sample::select(vec![
            "timeout", "name", "computed_body_hash", "total_size", "header_size",
            "content-length", "content-type",
        ])
        .prop_map(str::to_string),
        1 => "[a-z0-9_-]{1,24}",
    ]
}

/// Header values: numbers at their edges, text, and any byte a header may carry (obs-text).
fn arb_header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => weird_string().prop_map(String::into_bytes),
        2 => prop::sample::select(vec![
            i64::MIN.to_string(),
            i64::MAX.to_string(),
            u64::MAX.to_string(),
            "18446744073709551616".into(),
            "-0".into(),
            "1e308".into(),
            "1e309".into(),
            "12.0".into(),
            "0.000001".into(),
            PROTOCOL_VERSION.to_string(),
            "7002000".into(),
            "6009003".into(),
        ])
        .prop_map(String::into_bytes),
        2 => prop::collection::vec(
            prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff],
            0..40
        ),
    ]
}

fn header_map(pairs: &[(String, Vec<u8>)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            map.append(n, v);
        }
    }
    map
}

#[test]
fn terminal_info_from_arbitrary_headers_never_panics() {
    run(
        1,
        prop::collection::vec((arb_header_name(), arb_header_value()), 0..24),
        |pairs| {
            let map = header_map(&pairs);
            for side in ["dendrite", "axon", "", "x\u{0}"] {
                let info = TerminalInfo::from_headers(&map, side);
                // Whatever came in, it goes out again as headers without panicking.
                let _ = info.to_headers(side);
                if side == "dendrite" {
                    // A number is only taken when the header's text parses as one.
                    let text = |f: &str| {
                        map.get(format!("bt_header_dendrite_{f}"))
                            .and_then(|v| v.to_str().ok())
                    };
                    prop_assert_eq!(
                        info.nonce,
                        text("nonce").and_then(|t| t.parse::<u64>().ok())
                    );
                    prop_assert_eq!(
                        info.version,
                        text("version").and_then(|t| t.parse::<i64>().ok())
                    );
                }
            }
            Ok(())
        },
    );
}

fn header_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[ -~]{0,24}")
}

fn arb_terminal_info() -> impl Strategy<Value = TerminalInfo> {
    (
        (
            prop::option::of(any::<i64>()),
            header_text(),
            prop::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
            header_text(),
            prop::option::of(any::<i64>()),
        ),
        (
            prop::option::of(any::<i64>()),
            prop::option::of(any::<u64>()),
            header_text(),
            header_text(),
            header_text(),
        ),
    )
        .prop_map(
            |(
                (status_code, status_message, process_time, ip, port),
                (version, nonce, uuid, hotkey, signature),
            )| {
                TerminalInfo {
                    status_code,
                    status_message,
                    process_time,
                    ip,
                    port,
                    version,
                    nonce,
                    uuid,
                    hotkey,
                    signature,
                }
            },
        )
}

#[test]
fn terminal_info_round_trips_through_headers_and_bodies() {
    run(1, arb_terminal_info(), |info| {
        for side in ["dendrite", "axon"] {
            let pairs: Vec<(String, Vec<u8>)> = info
                .to_headers(side)
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            let back = TerminalInfo::from_headers(&header_map(&pairs), side);
            prop_assert_eq!(&back, &info);
        }
        let body = serde_json::to_vec(&info).unwrap();
        let back: TerminalInfo = serde_json::from_slice(&body).unwrap();
        prop_assert_eq!(&back, &info);
        Ok(())
    });
}

#[test]
fn py_float_parses_back_exactly() {
    run(
        1,
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        |x| {
            let text = synapse::py_float(x);
            prop_assert_eq!(text.parse::<f64>().ok(), Some(x), "{}", text);
            Ok(())
        },
    );
}

#[test]
fn envelope_and_synapse_bodies_never_panic() {
    let body = prop_oneof![
        2 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        2 => prop::collection::btree_map(arb_key(), arb_json(), 0..10)
            .prop_map(|m| serde_json::to_vec(&m).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => json_template(),
    ];
    run(1, body, |bytes| {
        if let Ok(mut envelope) = serde_json::from_slice::<Envelope>(&bytes) {
            envelope.strip_protocol_keys();
            // What the axon does next: the fields as the synapse type; what it answers: the
            // envelope re-encoded, which must read back.
            let _ =
                serde_json::from_value::<ImageGenerating>(Value::Object(envelope.fields.clone()));
            let _ = envelope.dendrite.to_headers("dendrite");
            let again = serde_json::to_vec(&envelope).unwrap();
            prop_assert!(
                serde_json::from_slice::<Envelope>(&again).is_ok(),
                "{}",
                String::from_utf8_lossy(&again)
            );
        }
        let _ = serde_json::from_slice::<ImageGenerating>(&bytes);
        let _ = serde_json::from_slice::<TerminalInfo>(&bytes);
        Ok(())
    });
}

#[test]
fn signatures_hotkeys_and_nonces_never_panic() {
    run(
        1,
        (
            prop_oneof![
                weird_string(),
                "(0x)?[0-9a-fA-F]{0,140}",
                prop::collection::vec(any::<u8>(), 64)
                    .prop_map(|b| format!("0x{}", hex::encode(b))),
            ],
            prop_oneof![weird_string(), "[1-9A-HJ-NP-Za-km-z]{0,60}"],
            any::<[u8; 32]>(),
        ),
        |(signature, address, key)| {
            if let Some(bytes) = keypair::parse_signature_hex(&signature) {
                prop_assert_eq!(bytes.len(), 64);
                let _ = keypair::verify(&key, b"message", &bytes);
            }
            let _ = ss58::decode(&address);
            prop_assert_eq!(ss58::decode(&ss58::encode(&key)), Ok(key));
            Ok(())
        },
    );
}

#[test]
fn nonce_checks_never_panic_on_extreme_values() {
    let tracker = NonceTracker::default();
    let timeout = prop_oneof![
        prop::sample::select(vec![
            0.0,
            -1.0,
            12.0,
            3600.0,
            1e10,
            1.9e10,
            1e300,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ]),
        any::<f64>(),
    ];
    let edge = || prop_oneof![any::<u64>(), Just(0u64), Just(u64::MAX), Just(now_ns())];
    run(
        1,
        (
            "[a-z]{1,3}:[a-z]{1,3}",
            prop::option::of(edge()),
            prop::option::of(prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX)]),
            timeout,
            edge(),
        ),
        |(endpoint, nonce, version, timeout, now)| {
            if let Ok(n) = tracker.check(&endpoint, nonce, version, timeout, now) {
                prop_assert_eq!(Some(n), nonce);
                let _ = tracker.record(&endpoint, n, now);
            }
            Ok(())
        },
    );
}

/// An axon that echoes every ImageGenerating it is sent.
struct Echo;

impl Handler<ImageGenerating> for Echo {
    type Error = std::io::Error;

    fn forward(
        self: Arc<Self>,
        _: Caller,
        synapse: ImageGenerating,
    ) -> BoxFuture<'static, Result<ImageGenerating, std::io::Error>> {
        async move { Ok(synapse) }.boxed()
    }
}

struct LiveAxon {
    key: Arc<Keypair>,
    url: String,
    target: AxonTarget,
    _server: RunningAxon,
}

fn live_axon() -> LiveAxon {
    let key = Arc::new(Keypair::generate().0);
    let axon = AxonBuilder::new(key.clone())
        .max_body(1 << 20)
        .attach::<ImageGenerating, _>(Arc::new(Echo))
        .build();
    let server = rt()
        .block_on(axon.spawn(([127, 0, 0, 1], 0).into()))
        .unwrap();
    let port = server.address.port();
    LiveAxon {
        key: key.clone(),
        url: format!("http://127.0.0.1:{port}"),
        target: AxonTarget {
            ip: "127.0.0.1".into(),
            port,
            hotkey: key.ss58().to_string(),
        },
        _server: server,
    }
}

fn http_client() -> reqwest::Client {
    nicheimage_common::http::client_builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Sends a raw request; the status, or why none came back.
fn send(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, Vec<u8>)],
    body: Vec<u8>,
) -> Result<u16, String> {
    // Framing and hop-by-hop headers are the HTTP library's; the rest are the fuzzer's.
    const FRAMING: [&str; 10] = [
        "content-length",
        "transfer-encoding",
        "connection",
        "host",
        "expect",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "proxy-connection",
    ];
    let mut request = client.post(url);
    for (name, value) in headers {
        if FRAMING.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value),
        ) {
            request = request.header(n, v);
        }
    }
    rt().block_on(async move {
        let response = request.body(body).send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        response.bytes().await.map_err(|e| e.to_string())?;
        Ok(status)
    })
}

fn honest_call_succeeds(axon: &LiveAxon) {
    let dendrite = Dendrite::new(Arc::new(Keypair::generate().0)).unwrap();
    let answer = rt().block_on(dendrite.call(
        &axon.target,
        &ImageGenerating {
            prompt: "still serving".into(),
            ..Default::default()
        },
        Duration::from_secs(10),
    ));
    assert_eq!(answer.status_code, 200, "{answer:?}");
    assert_eq!(answer.synapse.prompt, "still serving");
}

#[test]
fn axon_survives_arbitrary_unsigned_requests() {
    let axon = live_axon();
    let client = http_client();
    let path = prop_oneof![
        4 => Just("/ImageGenerating".to_string()),
        1 => Just("/NicheImageProtocol".to_string()),
        1 => "/[A-Za-z0-9_]{0,20}",
        1 => prop::sample::select(vec!["/", "/%FF", "/ImageGenerating/x", "/..", "/ImageGenerating?x=1"])
            .prop_map(str::to_string),
    ];
    let body = prop_oneof![
        arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::vec(any::<u8>(), 0..128),
    ];
    run(
        4,
        (
            path,
            prop::collection::vec((arb_header_name(), arb_header_value()), 0..16),
            body,
        ),
        |(path, headers, body)| {
            let status = send(&client, &format!("{}{path}", axon.url), &headers, body)
                .map_err(TestCaseError::fail)?;
            prop_assert!(
                (400..500).contains(&status),
                "an unsigned request was answered {status}"
            );
            Ok(())
        },
    );
    honest_call_succeeds(&axon);
}

#[derive(Debug, Clone)]
struct SignedRequest {
    version: Option<String>,
    timeout: Option<String>,
    /// Seconds added to now for the nonce (negative: older).
    nonce_offset_secs: i64,
    nonce_text: Option<String>,
    right_hash: bool,
    body: Vec<u8>,
    /// The honest case: every header as a current dendrite sends it and an ImageGenerating
    /// body.
    honest: bool,
}

/// A body that reads as an ImageGenerating, with arbitrary parameters and extra fields.
fn synapse_body() -> impl Strategy<Value = Vec<u8>> {
    (".{0,20}", any::<i64>(), arb_json(), arb_json()).prop_map(|(prompt, seed, params, extra)| {
        let mut fields = Map::new();
        fields.insert("prompt".into(), Value::from(prompt));
        fields.insert("seed".into(), Value::from(seed));
        if let Value::Object(p) = params {
            fields.insert("pipeline_params".into(), Value::Object(p));
        }
        fields.insert("extra_field".into(), extra);
        serde_json::to_vec(&Value::Object(fields)).unwrap()
    })
}

fn arb_signed_request() -> impl Strategy<Value = SignedRequest> {
    let version = prop::option::of(prop_oneof![
        3 => Just(PROTOCOL_VERSION.to_string()),
        2 => arb_header_value().prop_map(|v| String::from_utf8_lossy(&v).into_owned()),
    ]);
    let timeout = prop::option::of(prop::sample::select(vec![
        "12.0", "0", "-1", "NaN", "inf", "1e308", "3600", "86400", "0.0001", "", "abc",
    ]))
    .prop_map(|t| t.map(str::to_string));
    let body = prop_oneof![
        3 => synapse_body(),
        2 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..128),
    ];
    prop_oneof![
        1 => synapse_body().prop_map(|body| SignedRequest {
            version: Some(PROTOCOL_VERSION.to_string()),
            timeout: Some("12.0".into()),
            nonce_offset_secs: 0,
            nonce_text: None,
            right_hash: true,
            body,
            honest: true,
        }),
        3 => (
            version,
            timeout,
            prop_oneof![Just(0i64), Just(-10), Just(-70), Just(-3600), Just(10), Just(i64::MAX / 2_000_000_000)],
            prop::option::of(weird_string()),
            any::<bool>(),
            body,
        )
            .prop_map(|(version, timeout, nonce_offset_secs, nonce_text, right_hash, body)| {
                SignedRequest {
                    version,
                    timeout,
                    nonce_offset_secs,
                    nonce_text,
                    right_hash,
                    body,
                    honest: false,
                }
            }),
    ]
}

#[test]
fn axon_survives_signed_requests_with_arbitrary_headers_and_bodies() {
    let axon = live_axon();
    let client = http_client();
    run(4, arb_signed_request(), |r| {
        // A caller per case: each case is a fresh dendrite (its own uuid), and one hotkey may
        // hold only so many live uuids.
        let caller = Keypair::generate().0;
        let nonce = (now_ns() as i128 + i128::from(r.nonce_offset_secs) * 1_000_000_000)
            .clamp(0, i128::from(u64::MAX)) as u64;
        let uuid = uuid::Uuid::new_v4().to_string();
        let hash = if r.right_hash {
            synapse::body_hash().to_string()
        } else {
            synapse::sha3_hex(&r.body)
        };
        let message =
            synapse::dendrite_message(nonce, caller.ss58(), axon.key.ss58(), &uuid, &hash);
        let signature = caller.sign_hex(message.as_bytes()).unwrap();
        let mut headers: Vec<(String, Vec<u8>)> = vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("name".into(), b"ImageGenerating".to_vec()),
            ("computed_body_hash".into(), hash.into_bytes()),
            (
                "bt_header_dendrite_nonce".into(),
                r.nonce_text
                    .clone()
                    .unwrap_or(nonce.to_string())
                    .into_bytes(),
            ),
            ("bt_header_dendrite_uuid".into(), uuid.into_bytes()),
            (
                "bt_header_dendrite_hotkey".into(),
                caller.ss58().as_bytes().to_vec(),
            ),
            (
                "bt_header_dendrite_signature".into(),
                signature.into_bytes(),
            ),
            (
                "bt_header_axon_hotkey".into(),
                axon.key.ss58().as_bytes().to_vec(),
            ),
        ];
        if let Some(v) = &r.version {
            headers.push(("bt_header_dendrite_version".into(), v.clone().into_bytes()));
        }
        if let Some(t) = &r.timeout {
            headers.push(("timeout".into(), t.clone().into_bytes()));
        }
        let url = format!("{}/ImageGenerating", axon.url);
        let status = send(&client, &url, &headers, r.body.clone()).map_err(TestCaseError::fail)?;
        if r.honest {
            prop_assert_eq!(status, 200, "an honest signed request was refused");
        } else {
            prop_assert!(
                (200..500).contains(&status),
                "a signed request was answered {status}"
            );
        }
        Ok(())
    });
    honest_call_succeeds(&axon);
}

/// A raw HTTP answer from a fake axon.
#[derive(Debug, Clone)]
struct RawAnswer {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// Content-Length: right, missing (the end is the close), or a lie.
    length: Option<i64>,
}

fn arb_raw_answer() -> impl Strategy<Value = RawAnswer> {
    let status = prop_oneof![
        4 => Just(200u16),
        1 => prop::sample::select(vec![400u16, 401, 404, 408, 413, 422, 500, 503]),
        1 => 200u16..=599,
    ];
    let envelope_body =
        (arb_terminal_info(), arb_json(), arb_json()).prop_map(|(axon, image, extra)| {
            serde_json::to_vec(&json!({
                "name": "ImageGenerating",
                "axon": axon,
                "dendrite": {},
                "image": image,
                "prompt": "x",
                "extra": extra,
            }))
            .unwrap()
        });
    let body = prop_oneof![
        3 => envelope_body,
        2 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => json_template(),
    ];
    (
        status,
        prop::collection::vec((arb_header_name(), arb_header_value()), 0..12),
        body,
        prop::option::weighted(0.2, -5i64..5),
    )
        .prop_map(|(status, headers, body, length)| RawAnswer {
            status,
            headers,
            length,
            body,
        })
}

impl RawAnswer {
    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} Whatever\r\n", self.status).into_bytes();
        for (name, value) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if lower == "content-length" || lower == "transfer-encoding" || lower == "connection" {
                continue;
            }
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_bytes(value).is_err()
            {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        let length = match self.length {
            None => self.body.len() as i64,
            Some(lie) => (self.body.len() as i64 + lie).max(0),
        };
        out.extend_from_slice(
            format!("content-length: {length}\r\nconnection: close\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(&self.body);
        out
    }
}

/// Serves one connection with `answer` after reading the whole request.
async fn fake_axon(answer: Vec<u8>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut request = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let Ok(n) = socket.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                break;
            }
            request.extend_from_slice(&chunk[..n]);
            if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
        }
        let _ = socket.write_all(&answer).await;
        let _ = socket.shutdown().await;
    });
    address
}

#[test]
fn dendrite_survives_arbitrary_answers() {
    let dendrite = Dendrite::new(Arc::new(Keypair::generate().0)).unwrap();
    let hotkey = Keypair::generate().0.ss58().to_string();
    run(4, arb_raw_answer(), |answer| {
        let raw = answer.bytes();
        let response = rt().block_on(async {
            let address = fake_axon(raw).await;
            let target = AxonTarget {
                ip: "127.0.0.1".into(),
                port: address.port(),
                hotkey: hotkey.clone(),
            };
            dendrite
                .call(
                    &target,
                    &ImageGenerating::default(),
                    Duration::from_secs(10),
                )
                .await
        });
        // Every answer ends the call at once (each one is complete or closed).
        prop_assert!(response.process_time < 5.0, "the call hung: {response:?}");
        if response.is_success() {
            prop_assert_eq!(answer.status, 200);
        }
        prop_assert_eq!(
            response.axon.status_code,
            Some(i64::from(response.status_code))
        );
        prop_assert!(response.process_time.is_finite() && response.process_time >= 0.0);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// 3. `POST /generate` bodies.

/// JSON text with hand-picked number tokens serde_json has to refuse or convert: bigger than
/// any integer type, past f64, NaN literals, numbers as strings.
fn json_template() -> impl Strategy<Value = Vec<u8>> {
    let token = prop::sample::select(vec![
        "0",
        "-0",
        "1",
        "-1",
        "8",
        "512",
        "1024",
        "2048",
        "2056",
        "4096",
        "50",
        "51",
        "1e2",
        "512.0",
        "512.5",
        "1e999",
        "-1e999",
        "1e-400",
        "NaN",
        "Infinity",
        "-Infinity",
        "18446744073709551616",
        "18446744073709551615",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "4294967296",
        "4294967304",
        "\"512\"",
        "\"NaN\"",
        "null",
        "true",
        "[]",
        "{}",
        "[1,2,3]",
        "[0.5,0.5,0.5]",
        "\"\"",
        "\"txt2img\"",
        "\"img2img\"",
        "\"controlnet_txt2img\"",
        "00",
        "0x10",
        "+1",
        ".5",
    ]);
    let pipeline = prop::sample::select(vec![
        "\"txt2img\"",
        "\"img2img\"",
        "\"controlnet_txt2img\"",
        "\"TXT2IMG\"",
        "1",
        "null",
    ]);
    (
        pipeline,
        prop::collection::vec(token, 8),
        prop::collection::vec(any::<bool>(), 8),
    )
        .prop_map(|(pipeline, t, keep)| {
            let names = [
                "num_inference_steps",
                "width",
                "height",
                "guidance_scale",
                "negative_prompt",
                "strength",
                "controlnet_conditioning_scale",
            ];
            let params: Vec<String> = names
                .iter()
                .zip(&t[1..])
                .zip(&keep[1..])
                .filter(|(_, k)| **k)
                .map(|((n, v), _)| format!("\"{n}\": {v}"))
                .collect();
            let seed = if keep[0] { t[0] } else { "7" };
            format!(
                r#"{{"prompt": "a cat", "seed": {seed}, "pipeline_type": {pipeline}, "pipeline_params": {{{}}}}}"#,
                params.join(", ")
            )
            .into_bytes()
        })
}

/// Checks what must hold of any answer `request::parse` gives.
fn check_parse(body: &[u8], model: &ModelSpec) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let outcome = request::parse(body, model);
    prop_assert!(
        started.elapsed() < Duration::from_secs(10),
        "parsing took {:?}",
        started.elapsed()
    );
    let Ok(job) = outcome else {
        return Ok(());
    };
    prop_assert!(job.width > 0 && job.width <= model.max_side, "{job:?}");
    prop_assert!(job.height > 0 && job.height <= model.max_side, "{job:?}");
    prop_assert!(job.width % 8 == 0 && job.height % 8 == 0, "{job:?}");
    prop_assert!(
        (1..=MAX_STEPS).contains(&job.num_inference_steps),
        "{job:?}"
    );
    prop_assert!(
        job.guidance_scale.is_finite() && (0.0..=50.0).contains(&job.guidance_scale),
        "{job:?}"
    );
    prop_assert!(job.seed <= i64::MAX as u64);
    prop_assert!(!(job.img2img.is_some() && job.controlnet.is_some()));
    if let Some(input) = &job.img2img {
        prop_assert!((0.0..=1.0).contains(&input.strength));
        prop_assert!(f64::from(job.num_inference_steps) * input.strength >= 1.0);
        let image = RgbImage::from_base64_png(&input.image).unwrap();
        prop_assert_eq!(
            (image.width as u32, image.height as u32),
            (job.width, job.height)
        );
    }
    if let Some(input) = &job.controlnet {
        prop_assert!(
            input
                .scales
                .iter()
                .all(|s| s.is_finite() && (0.0..=10.0).contains(s))
        );
        let image = RgbImage::from_base64_png(&input.image).unwrap();
        prop_assert!(image.width as u32 <= model.max_side && image.height as u32 <= model.max_side);
    }
    // What was asked is what is drawn, or the request was refused.
    let body: Value = serde_json::from_slice(body).unwrap();
    let params = body.get("pipeline_params").and_then(Value::as_object);
    let asked = |key: &str| params.and_then(|p| p.get(key)).filter(|v| !v.is_null());
    for key in ["num_inference_steps", "width", "height"] {
        if let Some(v) = asked(key) {
            let n = v.as_u64().filter(|n| (1..=u64::from(u32::MAX)).contains(n));
            prop_assert!(n.is_some(), "{key} {v} was accepted: {job:?}");
        }
    }
    if let Some(steps) = asked("num_inference_steps") {
        prop_assert_eq!(steps.as_u64(), Some(u64::from(job.num_inference_steps)));
    }
    if job.img2img.is_none() {
        if let Some(w) = asked("width") {
            prop_assert_eq!(w.as_u64(), Some(u64::from(job.width)));
        }
        if let Some(h) = asked("height") {
            prop_assert_eq!(h.as_u64(), Some(u64::from(job.height)));
        }
    }
    if let Some(g) = asked("guidance_scale") {
        prop_assert_eq!(g.as_f64(), Some(job.guidance_scale));
    }
    Ok(())
}

#[test]
fn generate_bodies_arbitrary_bytes_and_json_never_panic() {
    let body = prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        2 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        3 => json_template(),
    ];
    run(
        1,
        (prop::sample::select(models().clone()), body),
        |(model, body)| check_parse(&body, &model),
    );
}

fn arb_param_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => weird_number(),
        2 => (1u32..=512).prop_map(|n| json!(n * 8)),
        1 => any::<u32>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        1 => weird_string().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => prop::collection::vec(weird_number(), 0..4).prop_map(Value::Array),
        1 => Just(json!({"value": 512})),
    ]
}

fn arb_generate_body() -> impl Strategy<Value = Value> {
    let params = prop::collection::btree_map(
        prop_oneof![
            6 => prop::sample::select(vec![
                "num_inference_steps",
                "width",
                "height",
                "guidance_scale",
                "negative_prompt",
                "strength",
                "controlnet_conditioning_scale",
            ])
            .prop_map(str::to_string),
            1 => "[a-z_]{1,10}",
        ],
        arb_param_value(),
        0..6,
    );
    let seed = prop_oneof![
        3 => any::<u32>().prop_map(Value::from),
        2 => weird_number(),
        1 => weird_string().prop_map(Value::from),
    ];
    let pipeline = prop_oneof![
        5 => prop::sample::select(vec!["txt2img", "img2img", "controlnet_txt2img"])
            .prop_map(Value::from),
        1 => weird_string().prop_map(Value::from),
        1 => weird_number(),
    ];
    let prompt = prop_oneof![
        5 => ".{0,32}".prop_map(Value::from),
        1 => weird_number(),
        1 => Just(Value::Null),
    ];
    (
        prompt,
        seed,
        pipeline,
        prop::option::of(params),
        prop::option::weighted(0.5, hostile_b64_image()),
        prop::option::of(arb_json()),
    )
        .prop_map(|(prompt, seed, pipeline, params, image, extra)| {
            let mut body = Map::new();
            body.insert("prompt".into(), prompt);
            body.insert("seed".into(), seed);
            body.insert("pipeline_type".into(), pipeline);
            if let Some(p) = params {
                body.insert(
                    "pipeline_params".into(),
                    Value::Object(p.into_iter().collect()),
                );
            }
            if let Some(i) = image {
                body.insert("conditional_image".into(), Value::from(i));
            }
            if let Some(e) = extra {
                body.insert("other_synapse_field".into(), e);
            }
            Value::Object(body)
        })
}

#[test]
fn generate_bodies_structured_but_wrong_are_refused_and_valid_ones_stay_in_limits() {
    let models = small_models();
    run(
        2,
        (prop::sample::select(models), arb_generate_body()),
        |(model, body)| check_parse(&serde_json::to_vec(&body).unwrap(), &model),
    );
}

#[test]
fn generate_bodies_out_of_range_numbers_are_bad_requests() {
    let model = models()[0].clone();
    let too_big = model.max_side + 8;
    let wrong = prop::sample::select(vec![
        ("width", json!(too_big)),
        ("height", json!(too_big)),
        ("width", json!(0)),
        ("width", json!(-8)),
        ("width", json!(512.5)),
        ("width", json!(u64::MAX)),
        ("width", json!(u64::from(u32::MAX) + 9)),
        ("height", json!("512")),
        ("width", json!(516)),
        ("num_inference_steps", json!(MAX_STEPS + 1)),
        ("num_inference_steps", json!(u64::MAX)),
        ("num_inference_steps", json!(-1)),
        ("num_inference_steps", json!(0)),
        ("guidance_scale", json!(50.5)),
        ("guidance_scale", json!(-0.5)),
        ("guidance_scale", json!(1e308)),
        ("guidance_scale", json!("NaN")),
        ("negative_prompt", json!(5)),
        ("lora_scale", json!(1)),
    ]);
    let seed = prop_oneof![
        Just(json!(-1)),
        Just(json!(i64::MAX as u64 + 1)),
        Just(json!(1.5))
    ];
    run(
        1,
        (wrong, prop::option::of(seed), any::<u32>()),
        |((key, value), bad_seed, good_seed)| {
            let body = json!({
                "prompt": "a cat",
                "seed": bad_seed.clone().unwrap_or(json!(good_seed)),
                "pipeline_type": "txt2img",
                "pipeline_params": { key: value.clone() },
            });
            let outcome = request::parse(&serde_json::to_vec(&body).unwrap(), &model);
            prop_assert!(
                matches!(&outcome, Err(request::BadRequest(why)) if !why.is_empty()),
                "{key}: {value} (seed {bad_seed:?}) gave {outcome:?}"
            );
            Ok(())
        },
    );
}

#[test]
fn generate_bodies_with_lying_conditional_images_are_refused_quickly() {
    let liar = B64.encode(lying_png());
    for model in models() {
        for pipeline in ["img2img", "controlnet_txt2img"] {
            let body = json!({
                "prompt": "a cat", "seed": 1, "pipeline_type": pipeline,
                "conditional_image": liar,
            });
            let started = Instant::now();
            let (outcome, peak) =
                peak_of(|| request::parse(&serde_json::to_vec(&body).unwrap(), model));
            assert!(outcome.is_err(), "{}: {pipeline}: {outcome:?}", model.name);
            assert!(peak <= REFUSAL_BUDGET, "{}: {peak} bytes", model.name);
            assert!(started.elapsed() < Duration::from_secs(1));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Reward batches.

/// What the reward service does with a batch body: [`reward::parse_batch`], then each miner's
/// `image` judged against `reference` (a stand-in for the regenerated one).
fn reward_batch(body: &[u8], model: &ModelSpec, reference: &str) -> Result<Vec<Verdict>, String> {
    let batch = nicheimage_node::reward::parse_batch(body, model).map_err(|e| e.to_string())?;
    let images: Vec<Option<&str>> = batch.miner_images.iter().map(|i| i.as_deref()).collect();
    judge::judge_batch(reference, &images).map_err(|e| e.to_string())
}

fn check_verdicts(
    verdicts: &[Verdict],
    miners: &[Option<&str>],
    reference: &RgbImage,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(verdicts.len(), miners.len());
    let one_by_one = Reference::new(reference);
    for (v, m) in verdicts.iter().zip(miners) {
        prop_assert!([1.0, 0.0, -5.0].contains(&v.reward()), "{v:?}");
        prop_assert!(!v.kind().is_empty() && !v.reason().is_empty());
        prop_assert_eq!(
            matches!(v, Verdict::Empty),
            m.is_none_or(str::is_empty),
            "{:?} for {:?}",
            v,
            m
        );
        prop_assert_eq!(v, &one_by_one.judge(*m));
    }
    Ok(())
}

#[test]
fn reward_batches_of_hostile_miner_images_never_panic() {
    let miner = prop_oneof![
        4 => hostile_b64_image().prop_map(Some),
        1 => Just(None),
        1 => Just(Some(String::new())),
        1 => Just(Some("same".to_string())),
    ];
    run(
        2,
        (arb_image(12), prop::collection::vec(miner, 0..6)),
        |(reference, miners)| {
            let reference_b64 = reference.to_base64_png().unwrap();
            let miners: Vec<Option<String>> = miners
                .into_iter()
                .map(|m| {
                    m.map(|t| {
                        if t == "same" {
                            reference_b64.clone()
                        } else {
                            t
                        }
                    })
                })
                .collect();
            let refs: Vec<Option<&str>> = miners.iter().map(|m| m.as_deref()).collect();
            let (verdicts, peak) = peak_of(|| judge::judge_batch(&reference_b64, &refs));
            let verdicts = verdicts.map_err(|e| TestCaseError::fail(e.to_string()))?;
            // The images decode on worker threads; this thread only holds texts and verdicts.
            prop_assert!(peak < 64 << 20, "{peak} bytes");
            check_verdicts(&verdicts, &refs, &reference)?;
            for (v, m) in verdicts.iter().zip(&refs) {
                if *m == Some(reference_b64.as_str()) {
                    prop_assert_eq!(v, &Verdict::Match { distance: 0 });
                }
            }
            Ok(())
        },
    );
}

#[test]
fn reward_batch_bodies_never_panic() {
    let model = small_models()[0].clone();
    let reference = RgbImage::new(8, 8, (0..192).map(|i| (i * 7) as u8).collect()).unwrap();
    let reference_b64 = reference.to_base64_png().unwrap();
    let miner_entry = prop_oneof![
        3 => hostile_b64_image().prop_map(|i| json!({"image": i, "uid": 1})),
        1 => arb_json(),
        1 => Just(json!({"image": null})),
        1 => Just(json!({"image": 5})),
    ];
    let batch = prop_oneof![
        3 => (
            prop::collection::vec(miner_entry, 0..5),
            prop_oneof![
                2 => json_template().prop_map(|b| serde_json::from_slice(&b).unwrap_or(Value::Null)),
                1 => arb_json(),
                1 => Just(json!({"prompt": "a cat", "seed": 1, "pipeline_type": "txt2img"})),
            ],
        )
            .prop_map(|(m, b)| serde_json::to_vec(&json!({"miner_data": m, "base_data": b})).unwrap()),
        1 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..128),
    ];
    run(2, batch, |body| {
        if let Ok(verdicts) = reward_batch(&body, &model, &reference_b64) {
            let value: Value = serde_json::from_slice(&body).unwrap();
            let images: Vec<Option<&str>> = value["miner_data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.get("image").and_then(Value::as_str))
                .collect();
            check_verdicts(&verdicts, &images, &reference)?;
        }
        Ok(())
    });
}

#[test]
fn reward_batches_with_an_undecodable_reference_are_errors() {
    run(
        1,
        (
            hostile_b64_image(),
            prop::collection::vec(prop::option::of(hostile_b64_image()), 0..3),
        ),
        |(reference, miners)| {
            let refs: Vec<Option<&str>> = miners.iter().map(|m| m.as_deref()).collect();
            let decodes = RgbImage::from_base64_png(&reference).is_ok();
            let outcome = judge::judge_batch(&reference, &refs);
            prop_assert_eq!(outcome.is_ok(), decodes);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Proxy requests.

const MAX_AGE: u64 = 30;

fn owner() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

fn arb_timestamp_text(now: i64) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(i64::MIN + 1),
            Just(i64::MIN + now),
            Just(0),
            Just(-1),
            Just(now),
            (now - 100..now + 100),
            any::<i64>(),
        ]
        .prop_map(|t| t.to_string()),
        1 => weird_string(),
        1 => prop::sample::select(vec![" 17 ", "+17", "1.5e9", "-0", "", "9223372036854775808"])
            .prop_map(str::to_string),
    ]
}

fn arb_nonce() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9_-]{8,64}",
        1 => "[A-Za-z0-9_-]{0,7}",
        1 => "[A-Za-z0-9_-]{65,80}",
        1 => ".{0,70}",
    ]
}

fn arb_signature() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 64).prop_map(|b| B64.encode(b)),
        1 => prop::collection::vec(any::<u8>(), 0..100).prop_map(|b| B64.encode(b)),
        1 => weird_string(),
    ]
}

#[test]
fn proxy_auth_headers_never_panic_on_any_timestamp() {
    let verifier = Verifier::new(Duration::from_secs(MAX_AGE), Some(owner().verifying_key()));
    let now = (now_ns() / 1_000_000_000) as i64;
    let clock = prop_oneof![
        3 => Just(now),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => any::<i64>(),
    ];
    run(
        1,
        (
            prop::option::of(arb_timestamp_text(now)),
            prop::option::of(arb_nonce()),
            prop::option::of(arb_signature()),
            prop::collection::vec(any::<u8>(), 0..64),
            clock,
        ),
        |(timestamp, nonce, signature, body, now)| {
            let header = |name: &'static str| match name {
                auth::TIMESTAMP_HEADER => timestamp.clone(),
                auth::NONCE_HEADER => nonce.clone(),
                auth::SIGNATURE_HEADER => signature.clone(),
                _ => None,
            };
            let outcome = verifier.check(header, &body, now);
            // Random signatures never verify.
            prop_assert!(outcome.is_err(), "{outcome:?}");
            if let Err(AuthError::Stale { max_secs, .. }) = outcome {
                prop_assert_eq!(max_secs, MAX_AGE);
            }
            Ok(())
        },
    );
}

#[test]
fn proxy_auth_at_the_ends_of_time() {
    let key = owner();
    let verifier = Verifier::new(Duration::from_secs(MAX_AGE), Some(key.verifying_key()));
    for (timestamp, now) in [
        (i64::MIN, 1_700_000_000),
        (i64::MIN, i64::MAX),
        (i64::MAX, i64::MIN),
        (i64::MAX, -1),
        (i64::MIN + 1_700_000_000, 1_700_000_000),
        (i64::MIN, i64::MIN),
        (i64::MAX, i64::MAX),
        (i64::MAX - 10, i64::MAX),
        (i64::MIN + 10, i64::MIN),
    ] {
        let headers = auth::sign(&key, b"{}", timestamp);
        let header = |name: &'static str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        let outcome = verifier.check(header, b"{}", now);
        let fresh = now.abs_diff(timestamp) <= MAX_AGE;
        assert_eq!(
            outcome.is_ok(),
            fresh,
            "timestamp {timestamp} at {now}: {outcome:?}"
        );
        if !fresh {
            assert!(
                matches!(outcome, Err(AuthError::Stale { .. })),
                "{outcome:?}"
            );
        }
    }
}

#[test]
fn proxy_signed_requests_pass_once_within_the_window_only() {
    let key = owner();
    let verifier = Verifier::new(Duration::from_secs(MAX_AGE), Some(key.verifying_key()));
    let timestamp = prop_oneof![
        3 => Just((now_ns() / 1_000_000_000) as i64),
        1 => any::<i64>(),
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX)],
    ];
    run(
        1,
        (
            timestamp,
            -2 * MAX_AGE as i64..=2 * MAX_AGE as i64,
            prop::collection::vec(any::<u8>(), 0..64),
        ),
        |(timestamp, skew, body)| {
            let Some(now) = timestamp.checked_add(skew) else {
                return Ok(());
            };
            let headers = auth::sign(&key, &body, timestamp);
            let header = |name: &'static str| {
                headers
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.clone())
            };
            let first = verifier.check(header, &body, now);
            if skew.unsigned_abs() <= MAX_AGE {
                prop_assert_eq!(first, Ok(()));
                prop_assert_eq!(verifier.check(header, &body, now), Err(AuthError::Replayed));
                // Another body under the same signature is forged.
                let mut other = body.clone();
                other.push(b' ');
                prop_assert!(verifier.check(header, &other, now).is_err());
            } else {
                prop_assert!(matches!(first, Err(AuthError::Stale { .. })), "{first:?}");
            }
            Ok(())
        },
    );
}

#[test]
fn proxy_keys_and_legacy_credentials_never_panic() {
    let verifier = Verifier::new(Duration::from_secs(MAX_AGE), None);
    let key = owner();
    verifier.set_legacy(auth::LegacyCredentials {
        message: "owner says hi".into(),
        signature: ed25519_dalek::Signer::sign(&key, b"owner says hi")
            .to_bytes()
            .to_vec(),
    });
    let public = key.verifying_key();
    run(
        1,
        prop_oneof![
            weird_string(),
            "(0x)?[0-9a-f]{0,70}",
            prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| B64.encode(b)),
            any::<[u8; 32]>().prop_map(hex::encode),
        ],
        |text| {
            if let Ok(k) = auth::parse_public_key(&text) {
                prop_assert_eq!(k.as_bytes().len(), 32);
            }
            let legacy = verifier.check_legacy(&text);
            if legacy.is_ok() {
                prop_assert_eq!(auth::parse_public_key(&text).ok(), Some(public));
            }
            Ok(())
        },
    );
    assert_eq!(
        verifier.check_legacy(&B64.encode(public.as_bytes())),
        Ok(())
    );
}

/// What the proxy makes of a body: its parser, then the synapse it sends to miners.
fn proxy_body(
    body: &[u8],
    model: &ModelSpec,
) -> Result<ImageGenerating, nicheimage_node::proxy::handler::BadRequest> {
    use nicheimage_node::proxy::handler::{build_synapse, parse_body};
    let payload = parse_body(body)?.payload;
    build_synapse(
        payload,
        model,
        &mut nicheimage_node::validator::Dice::new(7),
    )
}

#[test]
fn proxy_bodies_never_panic() {
    let model = models()[0].clone();
    let payload = prop::collection::btree_map(arb_key(), arb_json(), 0..8);
    let body = prop_oneof![
        3 => (payload, prop::option::of(prop_oneof![weird_number(), weird_string().prop_map(Value::from)]))
            .prop_map(|(p, uid)| {
                let mut body = json!({"payload": p});
                if let Some(uid) = uid {
                    body["miner_uid"] = uid;
                }
                serde_json::to_vec(&body).unwrap()
            }),
        1 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..128),
    ];
    run(1, body, |body| {
        if let Ok(synapse) = proxy_body(&body, &model) {
            let steps = synapse.pipeline_params.get("num_inference_steps");
            prop_assert!(
                steps.is_none_or(|s| s.as_u64().is_some_and(|n| n <= 50)),
                "{steps:?}"
            );
            // What goes to miners encodes.
            prop_assert!(serde_json::to_vec(&synapse).is_ok());
        }
        Ok(())
    });
}

#[test]
fn proxy_keys_parse_both_ways() {
    run(1, any::<[u8; 32]>(), |seed| {
        let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        for text in [
            hex::encode(key.as_bytes()),
            format!("0x{}", hex::encode(key.as_bytes())),
            B64.encode(key.as_bytes()),
            format!("  {}\n", B64.encode(key.as_bytes())),
        ] {
            prop_assert_eq!(auth::parse_public_key(&text), Ok(key));
        }
        Ok(())
    });
}

#[test]
fn models_are_there() {
    // The properties above draw from these; an empty catalogue would make them vacuous.
    assert!(models().len() >= 8);
    let names: BTreeMap<&str, u32> = models()
        .iter()
        .map(|m| (m.name.as_str(), m.max_side))
        .collect();
    assert!(names.contains_key("RealisticVision"), "{names:?}");
}
