use std::sync::Arc;

use super::design::Plan;
use super::stream::{BLOCK_FRAMES, Kernel};
use super::*;
use crate::kernels::{NonFinite, Sample};

const AMPLITUDE: f64 = 0.5;
const SECONDS: f64 = 0.25;
const EDGE_S: f64 = 0.03;
const SPEC_PAIRS: [(i64, i64); 4] = [
    (48000, 16000),
    (44100, 16000),
    (16000, 48000),
    (22050, 16000),
];
const OTHER_PAIRS: [(i64, i64); 4] = [
    (16000, 16000),
    (8000, 16000),
    (16000, 44100),
    (96000, 48000),
];

fn tone(freq: f64, rate: i64, seconds: f64) -> Vec<f64> {
    let n = (seconds * rate as f64).round() as usize;
    (0..n)
        .map(|i| {
            AMPLITUDE * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64 + 0.3).sin()
        })
        .collect()
}

fn noise(frames: usize, channels: usize, seed: u64) -> Vec<f64> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..frames * channels)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * 0.9
        })
        .collect()
}

fn mono(x: &[f64], source: i64, target: i64, quality: Quality) -> Vec<f32> {
    resample(x, 1, source, target, quality).unwrap()
}

/// `x` resampled in one call and flushed, on `kernel`.
fn whole_on(kernel: Kernel, x: &[f64], channels: usize, s: i64, t: i64, q: Quality) -> Vec<f32> {
    let mut r = Resampler::new(s, t, channels, q).unwrap();
    r.kernel = kernel;
    let mut y = Vec::new();
    r.process(x, &mut y).unwrap();
    r.flush(&mut y).unwrap();
    y
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Interior samples (edges dropped) as f64 with their indices.
fn interior(y: &[f32], rate: i64) -> (Vec<f64>, Vec<f64>) {
    let edge = (EDGE_S * rate as f64).round() as usize;
    let range = edge..y.len() - edge;
    (
        y[range.clone()].iter().map(|&v| v as f64).collect(),
        range.map(|k| k as f64).collect(),
    )
}

/// Least-squares amplitude of the sine at `freq` and the residual.
fn fit_sine(y: &[f32], freq: f64, rate: i64) -> (f64, Vec<f64>) {
    let (seg, k) = interior(y, rate);
    let w: Vec<f64> = k
        .iter()
        .map(|&k| 2.0 * std::f64::consts::PI * freq * k / rate as f64)
        .collect();
    let (mut ss, mut sc, mut cc, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (&w, &v) in w.iter().zip(&seg) {
        let (s, c) = w.sin_cos();
        ss += s * s;
        sc += s * c;
        cc += c * c;
        sy += s * v;
        cy += c * v;
    }
    let det = ss * cc - sc * sc;
    let a = (sy * cc - cy * sc) / det;
    let b = (cy * ss - sy * sc) / det;
    let residual = w
        .iter()
        .zip(&seg)
        .map(|(&w, &v)| v - (a * w.sin() + b * w.cos()))
        .collect();
    (a.hypot(b), residual)
}

fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
}

fn db(ratio: f64) -> f64 {
    20.0 * ratio.max(1e-300).log10()
}

fn plan_for(s: i64, t: i64) -> Option<Arc<Plan>> {
    Resampler::new(s, t, 1, Quality::High).unwrap().plan
}

fn stream<S: Sample>(
    x: &[S],
    channels: usize,
    source: i64,
    target: i64,
    quality: Quality,
    sizes: &[usize],
) -> Vec<f32> {
    let mut r = Resampler::new(source, target, channels, quality).unwrap();
    let mut out = Vec::new();
    let mut start = 0;
    for &size in sizes {
        let end = (start + size * channels).min(x.len());
        r.process(&x[start..end], &mut out).unwrap();
        start = end;
    }
    r.process(&x[start..], &mut out).unwrap();
    r.flush(&mut out).unwrap();
    out
}

#[test]
fn bessel_i0_matches_reference_values() {
    for (x, expected) in [
        (0.0, 1.0),
        (1.0, 1.2660658777520082),
        (5.0, 27.239871823604442),
        (12.4, 27798.565849335446),
        (15.0, 339649.3732979138),
        (16.673, 1714965.7695188618),
    ] {
        let got = bessel_i0(x);
        assert!(
            (got - expected).abs() <= 2e-15 * expected,
            "I0({x}) = {got}, expected {expected}"
        );
    }
}

#[test]
fn designs_match_the_numpy_reference() {
    // (source, target, quality, N, D, s_min, T, h[D], h[D+7], h[3]) from resampling.design_filter.
    let cases = [
        (
            48000,
            16000,
            Quality::High,
            369,
            184,
            -184,
            369,
            0.325,
            0.0342301467375768,
            1.6073730927301454e-08,
        ),
        (
            44100,
            16000,
            Quality::High,
            54083,
            27041,
            -169,
            340,
            0.3537414965986395,
            0.35360197981489283,
            -6.017397668775989e-09,
        ),
        (
            16000,
            48000,
            Quality::High,
            369,
            184,
            -61,
            124,
            0.9750000000000001,
            0.10269044021273041,
            4.8221192781904366e-08,
        ),
        (
            22050,
            16000,
            Quality::High,
            54083,
            27041,
            -84,
            170,
            0.707482993197279,
            0.7072039596297857,
            -1.2034795337551977e-08,
        ),
        (
            44100,
            16000,
            Quality::Low,
            12793,
            6396,
            -39,
            80,
            0.3356009070294785,
            0.33548088251979363,
            -0.00015704902125833437,
        ),
        (
            16000,
            44100,
            Quality::VeryHigh,
            186821,
            93410,
            -211,
            424,
            0.9749999999999999,
            0.9746158684934015,
            8.793633800016328e-10,
        ),
    ];
    for (s, t, q, n, d, s_min, taps, center, near, far) in cases {
        let design = design_filter(s, t, q).unwrap().unwrap();
        assert_eq!(
            (
                design.num_taps,
                design.delay,
                design.first_offset,
                design.taps_per_phase
            ),
            (n, d, s_min, taps),
            "{s} -> {t} {q:?}"
        );
        assert_eq!(design.phases.len(), design.up as usize * taps);
        let h = &design.prototype;
        for (got, expected) in [(h[d], center), (h[d + 7], near), (h[3], far)] {
            assert!(
                (got - expected).abs() <= 1e-13 * expected.abs().max(1e-3),
                "{got} vs {expected}"
            );
        }
        // The prototype is symmetric and the phase table indexes it as documented.
        assert!((0..n).all(|i| (h[i] - h[n - 1 - i]).abs() <= 1e-15));
        let up = design.up as i64;
        for r in [0, up / 2, up - 1] {
            for tt in [0usize, taps / 2, taps - 1] {
                let index = r - (s_min + tt as i64) * up + d as i64;
                let expected = if (0..n as i64).contains(&index) {
                    h[index as usize]
                } else {
                    0.0
                };
                assert_eq!(design.phase(r as usize)[tt], expected);
            }
        }
    }
    assert!(
        design_filter(16000, 16000, Quality::High)
            .unwrap()
            .is_none()
    );
}

#[test]
fn output_length_rounds_half_up() {
    for (s, t) in SPEC_PAIRS.iter().chain(&OTHER_PAIRS) {
        for frames in [0usize, 1, 2, 3, 147, 441, 1000, *s as usize / 8 + 1] {
            let y = resample(&vec![0.0f32; frames], 1, *s, *t, Quality::High).unwrap();
            let expected = ((frames as f64) * *t as f64 / *s as f64 + 0.5).floor() as usize;
            assert_eq!(y.len(), expected, "{frames} frames {s} -> {t}");
            assert_eq!(
                y.len() as u64,
                output_frames(frames as u64, *s as u64, *t as u64)
            );
        }
    }
    assert_eq!(output_frames(3, 48000, 16000), 1);
    assert_eq!(output_frames(1, 16000, 8000), 1);
    assert_eq!(output_frames(u64::MAX, 1, 8192), u64::MAX);
    assert_eq!(output_frames(u64::MAX, 8192, 1), u64::MAX / 8192 + 1);
}

#[test]
fn passband_is_flat_within_a_hundredth_of_a_db() {
    for (s, t) in SPEC_PAIRS {
        let nyq = s.min(t) as f64 / 2.0;
        for freq in [50.0, 997.0, 0.3 * nyq, 0.6 * nyq, 0.8 * nyq, 0.9 * nyq] {
            let (amp, _) = fit_sine(&mono(&tone(freq, s, SECONDS), s, t, Quality::High), freq, t);
            let gain = db(amp / AMPLITUDE);
            assert!(
                gain.abs() <= 0.01,
                "{s} -> {t}, {freq:.1} Hz: gain {gain:+.6} dB"
            );
        }
    }
}

#[test]
fn downsampling_rejects_tones_above_the_output_nyquist_by_120_db() {
    for (s, t) in SPEC_PAIRS.into_iter().filter(|(s, t)| t < s) {
        let (nyq_out, nyq_in) = (t as f64 / 2.0, s as f64 / 2.0);
        let mut freqs = vec![1.05 * nyq_out, 1.07 * nyq_out, 1.1 * nyq_out];
        freqs.extend(
            (0..7).map(|i| 1.15 * nyq_out + (0.995 * nyq_in - 1.15 * nyq_out) * i as f64 / 6.0),
        );
        for freq in freqs {
            let (seg, _) = interior(&mono(&tone(freq, s, SECONDS), s, t, Quality::High), t);
            let level = db(rms(&seg) / (AMPLITUDE / 2f64.sqrt()));
            assert!(
                level <= -120.0,
                "{s} -> {t}: {freq:.1} Hz leaks at {level:.1} dB"
            );
        }
    }
}

#[test]
fn upsampling_images_are_120_db_down() {
    let (s, t) = (16000, 48000);
    for freq in [997.0, 2000.0, 4000.0, 6000.0, 7200.0] {
        let (amp, residual) =
            fit_sine(&mono(&tone(freq, s, SECONDS), s, t, Quality::High), freq, t);
        let level = db(rms(&residual) / (amp / 2f64.sqrt()));
        assert!(level <= -120.0, "images of {freq} Hz at {level:.1} dB");
    }
}

#[test]
fn sinad_of_997_hz_is_at_least_130_db_on_both_kernels() {
    for (s, t) in SPEC_PAIRS {
        let x = tone(997.0, s, SECONDS);
        for kernel in Kernel::available() {
            let mut r = Resampler::new(s, t, 1, Quality::High).unwrap();
            r.kernel = kernel;
            let mut y = Vec::new();
            r.process(&x, &mut y).unwrap();
            r.flush(&mut y).unwrap();
            let (amp, residual) = fit_sine(&y, 997.0, t);
            let sinad = db((amp / 2f64.sqrt()) / rms(&residual));
            assert!(
                sinad >= 130.0,
                "{s} -> {t} ({kernel:?}): SINAD {sinad:.1} dB"
            );
        }
    }
}

#[test]
fn output_is_time_aligned_with_no_delay() {
    for (s, t) in SPEC_PAIRS
        .into_iter()
        .chain(OTHER_PAIRS[1..].iter().copied())
    {
        let nyq = s.min(t) as f64 / 2.0;
        let parts = [
            (100.0, 0.3, 0.2),
            (1234.5, 1.1, 0.15),
            (0.7 * nyq, 2.0, 0.1),
        ];
        let n = (SECONDS * s as f64) as usize;
        let wave = |rate: i64, k: f64| -> f64 {
            parts
                .iter()
                .map(|&(f, ph, a)| {
                    a * (2.0 * std::f64::consts::PI * f * k / rate as f64 + ph).sin()
                })
                .sum()
        };
        let x: Vec<f64> = (0..n).map(|i| wave(s, i as f64)).collect();
        let (seg, k) = interior(&mono(&x, s, t, Quality::High), t);
        let worst = seg
            .iter()
            .zip(&k)
            .map(|(&v, &k)| (v - wave(t, k)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 2e-6, "{s} -> {t}: {worst:e}");
    }
}

#[test]
fn matches_the_documented_formula_including_edges() {
    // y[k] = sum_i g[k*M - i*L] x[i] with g the zero-phase prototype, x = 0 outside.
    for (s, t) in [
        (44100, 16000),
        (16000, 44100),
        (48000, 16000),
        (8000, 16000),
    ] {
        for quality in Quality::ALL {
            let design = design_filter(s, t, quality).unwrap().unwrap();
            let (up, down, d) = (design.up as i64, design.down as i64, design.delay as i64);
            let x = noise(300, 1, 7);
            let y = mono(&x, s, t, quality);
            for (k, &got) in y.iter().enumerate() {
                let mut expected = 0.0;
                for (i, &xi) in x.iter().enumerate() {
                    let j = k as i64 * down - i as i64 * up + d;
                    if (0..design.num_taps as i64).contains(&j) {
                        expected += design.prototype[j as usize] * (xi as f32) as f64;
                    }
                }
                assert!(
                    (got as f64 - expected).abs() < 4e-7,
                    "{s} -> {t} {quality:?} k={k}: {got} vs {expected}"
                );
            }
        }
    }
}

#[test]
fn portable_kernel_agrees_with_the_simd_kernels() {
    // Long enough for every SIMD kernel (tiles over whole spans of
    // stripes, quarter spans, groups of 4, single outputs) to run; the
    // kernels do not depend on the quality, so the cheap one will do.
    let more = [
        (44100, 48000),
        (48000, 44100),
        (11025, 16000),
        (32000, 16000),
    ];
    for (s, t) in SPEC_PAIRS.into_iter().chain(OTHER_PAIRS).chain(more) {
        // 1.3 spans of the main kernel and more (at least 2.5 s).
        let span = plan_for(s, t).map_or(0, |p| p.span_outputs()) as f64;
        let frames = ((1.3 * span + 1000.0) * s as f64 / t as f64).max(2.5 * s as f64) as usize;
        let x = noise(frames, 1, 3);
        let slow = whole_on(Kernel::Portable, &x, 1, s, t, Quality::Low);
        for kernel in Kernel::available() {
            let fast = whole_on(kernel, &x, 1, s, t, Quality::Low);
            assert_eq!(fast.len(), slow.len());
            let worst = max_abs_diff(&fast, &slow);
            assert!(worst < 3e-7, "{s} -> {t} ({kernel:?}): {worst:e}");
        }
    }
}

#[test]
fn every_kernel_agrees_within_a_few_ulps_at_very_high_quality() {
    // Long windows round the most: up to about 7e-7 of a full-scale peak.
    for (s, t) in [(8000, 48000), (22050, 32000), (48000, 16000)] {
        let x = noise(s as usize / 2, 3, 11);
        let slow = whole_on(Kernel::Portable, &x, 3, s, t, Quality::VeryHigh);
        let peak = slow.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for kernel in Kernel::available() {
            let fast = whole_on(kernel, &x, 3, s, t, Quality::VeryHigh);
            let worst = max_abs_diff(&fast, &slow);
            assert!(
                worst <= 1e-6 * peak.max(1.0),
                "{s} -> {t} ({kernel:?}): {worst:e}"
            );
        }
    }
}

#[test]
fn chunked_streams_are_bit_identical_to_one_call_on_every_kernel() {
    // Chunks of 1 (single outputs), 13-101 (a few tiles) and long ones (spans),
    // odd and even window lengths (nv: 47 at 48k -> 16k high, 12 at low).
    for (s, t) in [
        (48000, 16000),
        (44100, 16000),
        (16000, 48000),
        (22050, 16000),
    ] {
        for quality in [Quality::Low, Quality::High] {
            let x = noise(s as usize / 8, 1, 5);
            for kernel in Kernel::available() {
                let run = |sizes: &[usize]| {
                    let mut r = Resampler::new(s, t, 1, quality).unwrap();
                    r.kernel = kernel;
                    let mut out = Vec::new();
                    let mut start = 0;
                    for &n in sizes.iter().cycle() {
                        let end = (start + n).min(x.len());
                        r.process(&x[start..end], &mut out).unwrap();
                        start = end;
                        if start == x.len() {
                            break;
                        }
                    }
                    r.flush(&mut out).unwrap();
                    out
                };
                let whole = run(&[x.len()]);
                for sizes in [&[1usize][..], &[13, 101, 7], &[4099]] {
                    assert!(
                        run(sizes) == whole,
                        "{s} -> {t} {quality:?} {kernel:?} in chunks {sizes:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn chunked_streams_are_bit_identical_to_one_call() {
    for (s, t) in SPEC_PAIRS.into_iter().chain(OTHER_PAIRS) {
        for quality in [Quality::Low, Quality::High] {
            let x = noise(s as usize / 16, 2, 3);
            let frames = x.len() / 2;
            let whole = resample(&x, 2, s, t, quality).unwrap();
            let chunkings: [Vec<usize>; 5] = [
                vec![1; 400],
                [vec![7; 50], vec![13, 0, 0, 101, 1009]].concat(),
                vec![0, frames + 5],
                vec![frames - 1],
                vec![2, 3, 5, 7919],
            ];
            for sizes in &chunkings {
                assert_eq!(
                    stream(&x, 2, s, t, quality, sizes),
                    whole,
                    "{s} -> {t} {quality:?} {sizes:?}"
                );
            }
        }
    }
}

#[test]
fn size_one_chunks_are_bit_identical_on_the_portable_kernel_too() {
    let (s, t) = (44100, 16000);
    let x = noise(2000, 1, 9);
    let run = |sizes: &[usize]| {
        let mut r = Resampler::new(s, t, 1, Quality::High).unwrap();
        r.kernel = Kernel::Portable;
        let mut out = Vec::new();
        let mut start = 0;
        for &n in sizes {
            r.process(&x[start..start + n], &mut out).unwrap();
            start += n;
        }
        r.flush(&mut out).unwrap();
        out
    };
    assert_eq!(run(&vec![1; 2000]), run(&[2000]));
}

#[test]
fn long_input_in_blocks_equals_small_chunks() {
    // Longer than a block (and than several stripe spans) of the one-call path.
    let (s, t) = (44100, 16000);
    let x = noise(BLOCK_FRAMES * 2 + 12345, 1, 4);
    let whole = resample(&x, 1, s, t, Quality::Low).unwrap();
    assert_eq!(stream(&x, 1, s, t, Quality::Low, &vec![4410; 40]), whole);
}

#[test]
fn outputs_are_emitted_once_their_lookahead_has_arrived() {
    let mut r = Resampler::new(48000, 16000, 1, Quality::High).unwrap();
    let lookahead = r.design().unwrap().lookahead() as usize;
    let mut out = Vec::new();
    r.process(&noise(3000, 1, 1), &mut out).unwrap();
    assert_eq!(out.len(), (3000 - 1 - lookahead) / 3 + 1);
    assert_eq!((r.frames_in(), r.frames_out()), (3000, out.len() as u64));
}

#[test]
fn stream_memory_stays_bounded() {
    let mut r = Resampler::new(44100, 16000, 2, Quality::High).unwrap();
    let taps = r.design().unwrap().taps_per_phase;
    let x = noise(441 * 100, 2, 2);
    let mut out = Vec::new();
    for chunk in x.chunks(441 * 2) {
        r.process(chunk, &mut out).unwrap();
        assert!(r.filled < taps + 8, "{} frames kept", r.filled);
        assert!(r.history.iter().all(|b| b.len() < taps + 441 + 64));
    }
    r.flush(&mut out).unwrap();
    assert_eq!(out.len() as u64, 2 * output_frames(441 * 100, 44100, 16000));
    assert!(r.history.is_empty());
}

#[test]
fn channels_are_independent_and_equal_to_mono() {
    for (s, t) in [(44100, 16000), (16000, 48000)] {
        let x = noise(s as usize / 10, 3, 5);
        let y = resample(&x, 3, s, t, Quality::High).unwrap();
        for c in 0..3 {
            let channel: Vec<f64> = x.iter().skip(c).step_by(3).copied().collect();
            let alone = mono(&channel, s, t, Quality::High);
            let got: Vec<f32> = y.iter().skip(c).step_by(3).copied().collect();
            assert_eq!(got, alone, "{s} -> {t} channel {c}");
        }
    }
}

#[test]
fn integer_input_is_scaled_to_unit_range() {
    let ints: Vec<i16> = noise(4410, 2, 2)
        .iter()
        .map(|v| (v * 32767.0) as i16)
        .collect();
    let floats: Vec<f32> = ints.iter().map(|&v| v as f32 / 32768.0).collect();
    let expected = resample(&floats, 2, 44100, 16000, Quality::High).unwrap();
    assert_eq!(
        resample(&ints, 2, 44100, 16000, Quality::High).unwrap(),
        expected
    );
    assert_eq!(
        stream(&ints, 2, 44100, 16000, Quality::High, &[333; 10]),
        expected
    );
    let wide: Vec<i32> = ints.iter().map(|&v| (v as i32) << 16).collect();
    assert_eq!(
        resample(&wide, 2, 44100, 16000, Quality::High).unwrap(),
        expected
    );
}

#[test]
fn equal_rates_return_the_input_as_f32() {
    let x = noise(1000, 2, 1);
    let y = resample(&x, 2, 16000, 16000, Quality::High).unwrap();
    assert_eq!(y, x.iter().map(|&v| v as f32).collect::<Vec<_>>());
    let ints = [-32768i16, 0, 16384];
    assert_eq!(
        resample(&ints, 1, 8000, 8000, Quality::Low).unwrap(),
        vec![-1.0, 0.0, 0.5]
    );
    assert_eq!(stream(&x, 2, 16000, 16000, Quality::High, &[1, 2, 3]), y);
}

#[test]
fn empty_input_gives_empty_output() {
    for (s, t) in SPEC_PAIRS.iter().chain(&OTHER_PAIRS) {
        assert!(
            resample::<i16>(&[], 2, *s, *t, Quality::High)
                .unwrap()
                .is_empty()
        );
        let mut r = Resampler::new(*s, *t, 2, Quality::High).unwrap();
        let mut out = Vec::new();
        r.process::<f32>(&[], &mut out).unwrap();
        r.flush(&mut out).unwrap();
        assert!(out.is_empty());
    }
}

#[test]
fn one_sample_input() {
    assert!(
        resample(&[0.5f64], 1, 48000, 16000, Quality::High)
            .unwrap()
            .is_empty()
    );
    let up = resample(&[0.5f64], 1, 16000, 48000, Quality::High).unwrap();
    let design = design_filter(16000, 48000, Quality::High).unwrap().unwrap();
    let (g, d) = (&design.prototype, design.delay);
    let expected: Vec<f64> = (0..3).map(|i| 0.5 * g[d + i]).collect();
    assert_eq!(up.len(), 3);
    for (got, want) in up.iter().zip(&expected) {
        assert!((*got as f64 - want).abs() < 1e-7, "{got} vs {want}");
    }
}

#[test]
fn bad_parameters_are_named() {
    // The audio's own rate and channel count are input errors; the
    // target rate and the ratio it makes are parameter errors.
    let name = |r: Result<Resampler, KernelError>| match r {
        Err(KernelError::InvalidParameter { name, .. }) => name,
        Err(KernelError::InvalidInput { name, .. }) => name,
        other => panic!("expected InvalidParameter or InvalidInput, got {other:?}"),
    };
    assert!(matches!(
        Resampler::new(0, 16000, 1, Quality::High),
        Err(KernelError::InvalidInput { .. })
    ));
    assert!(matches!(
        Resampler::new(48000, 16000, 0, Quality::High),
        Err(KernelError::InvalidInput { .. })
    ));
    assert!(matches!(
        Resampler::new(16000, 0, 1, Quality::High),
        Err(KernelError::InvalidParameter { .. })
    ));
    assert!(matches!(
        Resampler::new(44100, 48001, 1, Quality::High),
        Err(KernelError::InvalidParameter { .. })
    ));
    assert_eq!(
        name(Resampler::new(0, 16000, 1, Quality::High)),
        "source_rate"
    );
    assert_eq!(
        name(Resampler::new(-8000, 16000, 1, Quality::High)),
        "source_rate"
    );
    assert_eq!(
        name(Resampler::new(i64::MAX, 16000, 1, Quality::High)),
        "source_rate"
    );
    assert_eq!(
        name(Resampler::new(16000, 0, 1, Quality::High)),
        "target_rate"
    );
    assert_eq!(
        name(Resampler::new(16000, 2_000_000, 1, Quality::High)),
        "target_rate"
    );
    assert_eq!(
        name(Resampler::new(44100, 48001, 1, Quality::High)),
        "ratio"
    );
    assert_eq!(
        name(Resampler::new(48000, 16000, 0, Quality::High)),
        "channels"
    );
    let err = Resampler::new(44100, 48001, 1, Quality::High)
        .unwrap_err()
        .to_string();
    assert!(err.contains("48001/44100") && err.contains("8192"), "{err}");
    let err = "ultra".parse::<Quality>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid quality: must be one of 'low', 'medium', 'high', 'very_high', got 'ultra'"
    );
    assert_eq!("very_high".parse::<Quality>(), Ok(Quality::VeryHigh));
    // The largest accepted ratio designs and runs.
    assert!(resample(&[0.25f32; 100], 1, 8192, 8191, Quality::Low).is_ok());
}

#[test]
fn non_finite_samples_are_named_by_stream_frame_and_leave_the_stream_unchanged() {
    let x = noise(1000, 2, 3);
    let mut bad = x.clone();
    bad[2 * 123 + 1] = f64::NAN;
    assert_eq!(
        resample(&bad, 2, 48000, 16000, Quality::High).unwrap_err(),
        KernelError::NonFiniteSample {
            index: 247,
            frame: 123,
            channel: 1,
            kind: NonFinite::Nan
        }
    );
    let mut r = Resampler::new(48000, 16000, 2, Quality::High).unwrap();
    let mut out = Vec::new();
    r.process(&x[..1200], &mut out).unwrap();
    let emitted = out.len();
    let mut chunk = x[1200..].to_vec();
    chunk[21] = f64::INFINITY;
    let err = r.process(&chunk, &mut out).unwrap_err();
    assert_eq!(
        err.to_string(),
        "non-finite sample (inf) at index 1221 (frame 610, channel 1)"
    );
    assert_eq!(out.len(), emitted);
    r.process(&x[1200..], &mut out).unwrap();
    r.flush(&mut out).unwrap();
    assert_eq!(out, resample(&x, 2, 48000, 16000, Quality::High).unwrap());
    // The bypass checks too.
    assert!(resample(&[0.0f32, f32::NEG_INFINITY], 1, 8000, 8000, Quality::High).is_err());
}

#[test]
fn misuse_of_the_stream_is_an_error_not_a_panic() {
    let mut r = Resampler::new(48000, 16000, 2, Quality::High).unwrap();
    let mut out = Vec::new();
    assert!(matches!(
        r.process(&[0.0f32; 3], &mut out),
        Err(KernelError::Shape(_))
    ));
    r.process(&[0.0f32; 100], &mut out).unwrap();
    r.flush(&mut out).unwrap();
    let n = out.len();
    r.flush(&mut out).unwrap();
    assert_eq!(out.len(), n);
    let err = r.process(&[0.0f32; 2], &mut out).unwrap_err();
    assert!(err.to_string().contains("after flush"), "{err}");
}

#[test]
fn full_scale_extremes_stay_finite() {
    let x: Vec<i32> = (0..5000)
        .map(|i| if i % 2 == 0 { i32::MAX } else { i32::MIN })
        .collect();
    let y = resample(&x, 1, 44100, 16000, Quality::VeryHigh).unwrap();
    assert!(y.iter().all(|v| v.is_finite() && v.abs() < 2.0));
    let mut big = vec![1e30f64; 64];
    assert!(
        resample(&big, 1, 48000, 16000, Quality::Low)
            .unwrap()
            .iter()
            .all(|v| v.is_finite())
    );
    big[33] = -f64::MAX;
    assert_eq!(
        resample(&big, 2, 48000, 16000, Quality::Low)
            .unwrap_err()
            .to_string(),
        format!(
            "sample {} at index 33 (frame 16, channel 1) overflows float32",
            -f64::MAX
        )
    );
}
