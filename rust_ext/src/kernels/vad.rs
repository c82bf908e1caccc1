//! Energy voice activity detection (VADNode), step for step as
//! `reference.vad_segments`:
//!
//! 1. `frame_len = max(1, floor(rate * frame_ms / 1000 + 0.5))`;
//! 2. values as f64, integers divided by full scale;
//! 3. per frame, the interleaved samples squared into 8 lanes (`i % 8`),
//!    lanes summed as `((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))`;
//! 4. decision energy: each frame's `sum / count`, optionally averaged with its
//!    neighbours within `context_ms` ([`decision_energies`]);
//! 5. speech iff the decision energy exceeds `10^(threshold/10)` and, with a
//!    noise floor, also `floor * 10^(margin/10)`, the floor being a
//!    percentile of the decision energies ([`noise_floor`]); a floor of 0
//!    (digital silence) gives 0 whatever the margin, even one whose
//!    `10^(margin/10)` overflows to infinity ([`adaptive_level`]);
//! 6. smoothing: hangover, then filling short gaps, then dropping short runs;
//! 7. one segment per run of speech frames with its mean power and confidence.

use super::{KernelError, Sample, check_finite};
use crate::avx2_dispatch;

/// Parameters of [`vad_segments`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadParams {
    /// Samples per second.
    pub sample_rate: u32,
    /// Threshold on a frame's mean square, dBFS.
    pub threshold_db: f64,
    /// Frame length, ms.
    pub frame_length_ms: f64,
    /// Speech kept after each run, ms (0 = off).
    pub hangover_ms: f64,
    /// Shortest speech run kept, ms (0 = off).
    pub min_speech_ms: f64,
    /// Shortest silence gap kept, ms (0 = off).
    pub min_silence_ms: f64,
    /// Neighbours averaged into each frame's decision energy, ms each side (0 = off).
    pub context_ms: f64,
    /// Percentile (0..=100) of the decision energies taken as the noise floor
    /// (`None` = no adaptive threshold).
    pub noise_floor_percentile: Option<f64>,
    /// How far above the noise floor speech must be, dB.
    pub noise_floor_margin_db: f64,
}

impl Default for VadParams {
    fn default() -> Self {
        VadParams {
            sample_rate: 16000,
            threshold_db: -30.0,
            frame_length_ms: 30.0,
            hangover_ms: 0.0,
            min_speech_ms: 0.0,
            min_silence_ms: 0.0,
            context_ms: 0.0,
            noise_floor_percentile: None,
            noise_floor_margin_db: 3.0,
        }
    }
}

/// One speech segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Start, ms.
    pub start_ms: f64,
    /// End, ms (capped at the audio's duration).
    pub end_ms: f64,
    /// Mean power of the segment, dB.
    pub energy_db: f64,
    /// `clamp(1 - 10^(-(energy_db - threshold)/10), 0, 1)`.
    pub confidence: f64,
}

/// Samples per frame: `max(1, floor(rate * frame_ms / 1000 + 0.5))`.
pub fn frame_len(sample_rate: u32, frame_length_ms: f64) -> usize {
    let len = (sample_rate as f64 * frame_length_ms / 1000.0 + 0.5).floor();
    if len >= 1.0 { len as usize } else { 1 }
}

/// A smoothing duration in frames: `ceil(ms / frame_ms)` (saturating).
pub fn smoothing_frames(ms: f64, frame_length_ms: f64) -> usize {
    (ms / frame_length_ms).ceil() as usize
}

#[inline(always)]
fn lanes_sum<T: Sample>(frame: &[T]) -> f64 {
    let inv = T::SCALE;
    let mut l = [0.0f64; 8];
    let mut chunks = frame.chunks_exact(8);
    for chunk in &mut chunks {
        for k in 0..8 {
            let e = chunk[k].to_f64() / inv;
            l[k] += e * e;
        }
    }
    for (k, &v) in chunks.remainder().iter().enumerate() {
        let e = v.to_f64() / inv;
        l[k] += e * e;
    }
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

#[inline(always)]
fn energies_impl<T: Sample>(x: &[T], width: usize, sums: &mut [f64]) {
    for (sum, frame) in sums.iter_mut().zip(x.chunks(width)) {
        *sum = lanes_sum(frame);
    }
}

avx2_dispatch!(fn energies_dispatch<T: Sample>(x: &[T], width: usize, sums: &mut [f64]) => energies_impl);

/// Per-frame sums of squares (8-lane order) and sample counts of interleaved
/// `channels`-channel audio cut into frames of `frame_len` time steps.
pub fn frame_energies<T: Sample>(
    x: &[T],
    channels: usize,
    frame_len: usize,
) -> Result<(Vec<f64>, Vec<u64>), KernelError> {
    if channels == 0 || frame_len == 0 {
        return Err(KernelError::Shape(
            "channels and frame length must be >= 1".to_owned(),
        ));
    }
    let width = frame_len
        .checked_mul(channels)
        .ok_or_else(|| KernelError::Shape("frame length times channels overflows".to_owned()))?;
    let n = x.len().div_ceil(width);
    let mut sums = vec![0.0f64; n];
    energies_dispatch(x, width, &mut sums);
    let counts = x.chunks(width).map(|f| f.len() as u64).collect();
    Ok((sums, counts))
}

/// Per-frame energies the speech decision compares: `sum / count`, or with
/// `context` > 0 the mean of those of the frames within `context` frames
/// (fewer at the edges), summed from 0.0 in increasing frame order.
pub fn decision_energies(sums: &[f64], counts: &[u64], context: usize) -> Vec<f64> {
    let mean_square: Vec<f64> = sums
        .iter()
        .zip(counts)
        .map(|(&s, &c)| s / c as f64)
        .collect();
    let n = mean_square.len();
    let reach = context.min(n.saturating_sub(1));
    if reach == 0 {
        return mean_square;
    }
    (0..n)
        .map(|f| {
            let (lo, hi) = (f.saturating_sub(reach), (f + reach).min(n - 1));
            let mut acc = 0.0f64;
            for &m in &mean_square[lo..=hi] {
                acc += m;
            }
            acc / (hi - lo + 1) as f64
        })
        .collect()
}

/// The noise floor: `sorted(energies)[floor((n - 1) * percentile / 100)]`.
/// `energies` must be non-empty and free of NaN.
pub fn noise_floor(energies: &[f64], percentile: f64) -> f64 {
    let n = energies.len();
    let index = (((n - 1) as f64 * percentile / 100.0).floor() as usize).min(n - 1);
    let mut scratch = energies.to_vec();
    let (_, nth, _) = scratch.select_nth_unstable_by(index, f64::total_cmp);
    *nth
}

/// `floor * 10^(margin_db/10)`, and 0 for a floor of 0 even where the factor
/// overflows to infinity (0 times infinity would be NaN, above which no frame is).
fn adaptive_level(floor: f64, margin_db: f64) -> f64 {
    if floor == 0.0 {
        0.0
    } else {
        floor * 10.0f64.powf(margin_db / 10.0)
    }
}

/// Per-frame speech decisions from frame sums and counts (step 5).
pub fn frame_decisions(sums: &[f64], counts: &[u64], p: &VadParams) -> Vec<bool> {
    let energies = decision_energies(
        sums,
        counts,
        smoothing_frames(p.context_ms, p.frame_length_ms),
    );
    let thr = 10.0f64.powf(p.threshold_db / 10.0);
    let adaptive = match p.noise_floor_percentile {
        Some(pct) if !energies.is_empty() => Some(adaptive_level(
            noise_floor(&energies, pct),
            p.noise_floor_margin_db,
        )),
        _ => None,
    };
    energies
        .iter()
        .map(|&d| d > thr && adaptive.is_none_or(|a| d > a))
        .collect()
}

/// Maximal runs of `true` as half-open `(start, end)` pairs.
fn runs(flags: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &f) in flags.iter().enumerate() {
        match (f, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, flags.len()));
    }
    out
}

/// Smoothing of per-frame decisions: hangover, then gap filling, then
/// dropping short runs (counts in frames; 0 = off).
pub fn smooth_decisions(
    speech: &mut [bool],
    hangover: usize,
    min_speech: usize,
    min_silence: usize,
) {
    let n = speech.len();
    if hangover > 0 {
        for (_, end) in runs(speech) {
            let stop = end.saturating_add(hangover).min(n);
            speech[end..stop].fill(true);
        }
    }
    if min_silence > 0 {
        let r = runs(speech);
        for pair in r.windows(2) {
            let (gap_start, gap_end) = (pair[0].1, pair[1].0);
            if gap_end - gap_start < min_silence {
                speech[gap_start..gap_end].fill(true);
            }
        }
    }
    if min_speech > 0 {
        for (start, end) in runs(speech) {
            if end - start < min_speech {
                speech[start..end].fill(false);
            }
        }
    }
}

fn check_params(p: &VadParams) -> Result<(), KernelError> {
    let bad =
        |name: &'static str, reason: String| Err(KernelError::InvalidParameter { name, reason });
    if p.sample_rate == 0 {
        return Err(KernelError::InvalidInput {
            name: "sample_rate",
            reason: "must be a positive integer, got 0".to_owned(),
        });
    }
    if !p.threshold_db.is_finite() {
        return bad(
            "threshold_db",
            format!("must be finite, got {}", p.threshold_db),
        );
    }
    if !p.frame_length_ms.is_finite() || p.frame_length_ms <= 0.0 {
        return bad(
            "frame_length_ms",
            format!("must be > 0, got {}", p.frame_length_ms),
        );
    }
    for (name, v) in [
        ("hangover_ms", p.hangover_ms),
        ("min_speech_ms", p.min_speech_ms),
        ("min_silence_ms", p.min_silence_ms),
        ("context_ms", p.context_ms),
    ] {
        if !v.is_finite() || v < 0.0 {
            return bad(name, format!("must be >= 0, got {v}"));
        }
    }
    if let Some(pct) = p.noise_floor_percentile
        && !(0.0..=100.0).contains(&pct)
    {
        return bad(
            "noise_floor_percentile",
            format!("must be in [0, 100], got {pct}"),
        );
    }
    if !p.noise_floor_margin_db.is_finite() || p.noise_floor_margin_db < 0.0 {
        return bad(
            "noise_floor_margin_db",
            format!("must be >= 0, got {}", p.noise_floor_margin_db),
        );
    }
    Ok(())
}

/// Per-frame sums of squares and sample counts of one frame-aligned piece of
/// a stream, after checking every sample is finite. A non-finite sample is
/// named by its frame within the stream: `first_frame` is the stream frame
/// of the piece's first frame (0 for a whole input).
pub fn checked_frame_energies<T: Sample>(
    x: &[T],
    channels: usize,
    frame_len: usize,
    first_frame: usize,
) -> Result<(Vec<f64>, Vec<u64>), KernelError> {
    if channels == 0 || !x.len().is_multiple_of(channels) {
        return Err(KernelError::Shape(format!(
            "{} samples do not divide into {channels} channels",
            x.len()
        )));
    }
    if let Err(err) = check_finite(x, channels) {
        return Err(match err {
            KernelError::NonFiniteSample { index, .. } => KernelError::non_finite(
                index + first_frame.saturating_mul(channels),
                channels,
                x[index].to_f64(),
            ),
            other => other,
        });
    }
    frame_energies(x, channels, frame_len)
}

/// Speech segments of interleaved `channels`-channel audio.
pub fn vad_segments<T: Sample>(
    x: &[T],
    channels: usize,
    p: &VadParams,
) -> Result<Vec<Segment>, KernelError> {
    check_params(p)?;
    if x.is_empty() {
        return Ok(Vec::new());
    }
    let flen = frame_len(p.sample_rate, p.frame_length_ms);
    let (sums, counts) = checked_frame_energies(x, channels, flen, 0)?;
    segments_from_energies(&sums, &counts, x.len() / channels, p)
}

/// Speech segments from the per-frame energies of a whole input of `n_time`
/// time steps (steps 4 to 7 of the reference): what [`vad_segments`] computes
/// once it has the energies, so a stream's energies, gathered piece by piece
/// with [`checked_frame_energies`], give the same segments as one call.
pub fn segments_from_energies(
    sums: &[f64],
    counts: &[u64],
    n_time: usize,
    p: &VadParams,
) -> Result<Vec<Segment>, KernelError> {
    check_params(p)?;
    let flen = frame_len(p.sample_rate, p.frame_length_ms);
    if sums.len() != counts.len() || sums.len() != n_time.div_ceil(flen) {
        return Err(KernelError::Shape(format!(
            "{} sums and {} counts do not describe {n_time} frames in frames of {flen}",
            sums.len(),
            counts.len()
        )));
    }
    if let Some(f) = counts.iter().position(|&c| c == 0) {
        return Err(KernelError::Shape(format!(
            "frame {f} has a sample count of 0"
        )));
    }
    if n_time == 0 {
        return Ok(Vec::new());
    }
    let mut speech = frame_decisions(sums, counts, p);
    smooth_decisions(
        &mut speech,
        smoothing_frames(p.hangover_ms, p.frame_length_ms),
        smoothing_frames(p.min_speech_ms, p.frame_length_ms),
        smoothing_frames(p.min_silence_ms, p.frame_length_ms),
    );
    let rate = p.sample_rate as f64;
    let segments = runs(&speech)
        .into_iter()
        .map(|(first, last)| {
            let mut seg_sum = 0.0f64;
            for &s in &sums[first..last] {
                seg_sum += s;
            }
            let seg_count: u64 = counts[first..last].iter().sum();
            let energy_db = if seg_sum > 0.0 {
                10.0 * (seg_sum / seg_count as f64).log10()
            } else {
                f64::NEG_INFINITY
            };
            let confidence =
                (1.0 - 10.0f64.powf(-(energy_db - p.threshold_db) / 10.0)).clamp(0.0, 1.0);
            Segment {
                start_ms: (first * flen) as f64 * 1000.0 / rate,
                end_ms: (last.saturating_mul(flen)).min(n_time) as f64 * 1000.0 / rate,
                energy_db,
                confidence,
            }
        })
        .collect();
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, amp: f32, rate: f32) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate).sin())
            .collect()
    }

    #[test]
    fn silence_gives_no_segments() {
        let x = vec![0.0f32; 16000];
        assert!(
            vad_segments(&x, 1, &VadParams::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn tone_silence_tone_boundaries() {
        let mut x = tone(8000, 0.5, 16000.0);
        x.extend(vec![0.0; 4800]);
        x.extend(tone(3200, 0.5, 16000.0));
        let segs = vad_segments(&x, 1, &VadParams::default()).unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[0].start_ms, segs[0].end_ms), (0.0, 510.0));
        assert_eq!((segs[1].start_ms, segs[1].end_ms), (780.0, 1000.0));
        // 8000 tone samples of mean square 0.125 over the 8160 samples of 17 frames.
        let expected = 10.0 * (0.125f64 * 8000.0 / 8160.0).log10();
        assert!((segs[0].energy_db - expected).abs() < 0.01);
        assert!(segs[0].confidence > 0.99);
    }

    #[test]
    fn lanes_match_a_plain_loop() {
        let x: Vec<f64> = (0..37)
            .map(|i| (i as f64 * 0.37).sin() * 1e3f64.powi(i % 3))
            .collect();
        let mut l = [0.0f64; 8];
        for (i, v) in x.iter().enumerate() {
            l[i % 8] += v * v;
        }
        let expected = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        assert_eq!(lanes_sum(&x), expected);
    }

    #[test]
    fn smoothing_order() {
        // hangover 1: T F F T F F F T -> T T F T T F F T
        let mut s = [true, false, false, true, false, false, false, true];
        smooth_decisions(&mut s, 1, 0, 0);
        assert_eq!(s, [true, true, false, true, true, false, false, true]);
        // gap fill 2 then drop runs < 3
        let mut s = [true, false, true, false, false, false, true];
        smooth_decisions(&mut s, 0, 3, 2);
        assert_eq!(s, [true, true, true, false, false, false, false]);
    }

    #[test]
    fn bad_params_and_non_finite() {
        let p = VadParams {
            frame_length_ms: 0.0,
            ..VadParams::default()
        };
        assert!(vad_segments(&[0.0f32], 1, &p).is_err());
        let p = VadParams {
            sample_rate: 0,
            ..VadParams::default()
        };
        assert!(vad_segments(&[0.0f32], 1, &p).is_err());
        assert!(vad_segments(&[0.0f32, f32::NAN], 1, &VadParams::default()).is_err());
        assert!(
            vad_segments::<f32>(&[], 1, &VadParams::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn context_averages_existing_neighbours() {
        let sums = [3.0, 6.0, 9.0, 0.0];
        let counts = [3, 3, 3, 3];
        assert_eq!(
            decision_energies(&sums, &counts, 0),
            vec![1.0, 2.0, 3.0, 0.0]
        );
        assert_eq!(
            decision_energies(&sums, &counts, 1),
            vec![1.5, 2.0, 5.0 / 3.0, 1.5]
        );
        // A context beyond the input averages everything, as a context of n - 1 does.
        assert_eq!(
            decision_energies(&sums, &counts, usize::MAX),
            decision_energies(&sums, &counts, 3)
        );
        assert!(decision_energies(&[], &[], 5).is_empty());
    }

    #[test]
    fn noise_floor_picks_by_index_rule() {
        let e = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(noise_floor(&e, 0.0), 1.0);
        assert_eq!(noise_floor(&e, 24.9), 1.0); // floor(4 * 0.249) = 0
        assert_eq!(noise_floor(&e, 25.0), 2.0);
        assert_eq!(noise_floor(&e, 50.0), 3.0);
        assert_eq!(noise_floor(&e, 100.0), 5.0);
        assert_eq!(noise_floor(&[7.0], 30.0), 7.0);
    }

    #[test]
    fn noise_floor_lifts_the_threshold_above_steady_noise() {
        // Noise at -20 dBFS with a louder burst: the fixed -60 dB threshold
        // calls every frame speech; the adaptive one only the burst.
        let mut x: Vec<f32> = (0..16000)
            .map(|i| 0.1 * if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        for v in &mut x[8000..9600] {
            *v *= 5.0;
        }
        let plain = VadParams {
            threshold_db: -60.0,
            ..VadParams::default()
        };
        let segs = vad_segments(&x, 1, &plain).unwrap();
        assert_eq!(
            (segs.len(), segs[0].start_ms, segs[0].end_ms),
            (1, 0.0, 1000.0)
        );
        let adaptive = VadParams {
            noise_floor_percentile: Some(20.0),
            noise_floor_margin_db: 3.0,
            ..plain
        };
        let segs = vad_segments(&x, 1, &adaptive).unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!((segs[0].start_ms, segs[0].end_ms), (480.0, 600.0));
        // Confidence still refers to the fixed threshold.
        assert!(segs[0].confidence > 0.99);
        // With one frame of context the frames next to the burst join it.
        let wide = VadParams {
            context_ms: 30.0,
            ..adaptive
        };
        let segs = vad_segments(&x, 1, &wide).unwrap();
        assert_eq!((segs[0].start_ms, segs[0].end_ms), (450.0, 630.0));
    }

    #[test]
    fn a_silent_floor_with_a_huge_margin_leaves_the_fixed_threshold() {
        // 10^(5000/10) overflows: a floor of 0 must still give 0, not NaN
        assert_eq!(adaptive_level(0.0, 5000.0), 0.0);
        assert_eq!(adaptive_level(1e-9, 5000.0), f64::INFINITY);
        let mut x = vec![0.0f32; 80];
        x.extend([0.000_565_56, -0.001_899_58]);
        let p = VadParams {
            sample_rate: 8000,
            threshold_db: -60.0,
            frame_length_ms: 10.0,
            hangover_ms: 0.0,
            min_speech_ms: 0.0,
            min_silence_ms: 0.0,
            context_ms: 0.0,
            noise_floor_percentile: Some(0.0),
            noise_floor_margin_db: 5000.0,
        };
        let segs = vad_segments(&x, 1, &p).unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!((segs[0].start_ms, segs[0].end_ms), (10.0, 10.25));
    }

    #[test]
    fn bad_noise_floor_params() {
        for p in [
            VadParams {
                noise_floor_percentile: Some(100.5),
                ..VadParams::default()
            },
            VadParams {
                noise_floor_percentile: Some(f64::NAN),
                ..VadParams::default()
            },
            VadParams {
                noise_floor_margin_db: -1.0,
                ..VadParams::default()
            },
            VadParams {
                context_ms: f64::INFINITY,
                ..VadParams::default()
            },
        ] {
            assert!(vad_segments(&[0.0f32], 1, &p).is_err());
        }
    }

    #[test]
    fn energies_of_frame_aligned_pieces_give_the_whole_inputs_segments() {
        let mut x = tone(8000, 0.5, 16000.0);
        x.extend(vec![0.001; 5000]);
        x.extend(tone(4111, 0.3, 16000.0));
        let p = VadParams {
            context_ms: 30.0,
            noise_floor_percentile: Some(20.0),
            hangover_ms: 60.0,
            ..VadParams::default()
        };
        let whole = vad_segments(&x, 1, &p).unwrap();
        let flen = frame_len(p.sample_rate, p.frame_length_ms);
        let (mut sums, mut counts) = (Vec::new(), Vec::new());
        let mut start = 0;
        for piece in [3 * flen, 0, 7 * flen, flen, x.len()] {
            let end = (start + piece).min(x.len());
            let (s, c) = checked_frame_energies(&x[start..end], 1, flen, start / flen).unwrap();
            sums.extend(s);
            counts.extend(c);
            start = end;
        }
        let streamed = segments_from_energies(&sums, &counts, x.len(), &p).unwrap();
        assert_eq!(whole, streamed);
        assert!(segments_from_energies(&sums[1..], &counts[1..], x.len(), &p).is_err());
    }

    #[test]
    fn checked_energies_name_the_stream_frame() {
        let mut x = vec![0.5f32; 20];
        x[7] = f32::NAN;
        let err = checked_frame_energies(&x, 2, 4, 100).unwrap_err();
        assert_eq!(
            err,
            KernelError::NonFiniteSample {
                index: 207,
                frame: 103,
                channel: 1,
                kind: crate::kernels::NonFinite::Nan
            }
        );
    }
}
