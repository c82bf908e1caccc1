//! Cutting speech into utterances (SegmentNode), step for step as
//! `reference.segment_bounds`:
//!
//! 1. segment bounds in ms to frames: `floor(ms * rate / 1000 + 0.5)`,
//!    clamped to the input; empty segments dropped; ordered by (start, end);
//! 2. segments less than `merge_gap_ms` apart joined;
//! 3. each clip padded by `pad_ms` (within the input); overlapping clips joined;
//! 4. clips longer than `max_s` cut at the midpoint of their quietest frame
//!    (`split_frame_ms` frames, VAD frame energies), again and again;
//! 5. clips shorter than `min_s` dropped, or merged into the nearer neighbour.

use super::vad::frame_energies;
use super::{KernelError, Sample, check_finite};

/// What happens to a clip shorter than `min_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Short {
    /// It is dropped.
    Drop,
    /// It joins its nearer neighbour (when the result is at most `max_s`).
    Merge,
}

/// Parameters of [`segment_bounds`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentParams {
    /// Samples per second.
    pub sample_rate: u32,
    /// Segments closer than this are one utterance, ms.
    pub merge_gap_ms: f64,
    /// Context added on both sides, ms.
    pub pad_ms: f64,
    /// Shortest utterance kept, s.
    pub min_s: f64,
    /// Longest utterance, s (longer ones are split).
    pub max_s: f64,
    /// What to do with short utterances.
    pub short: Short,
    /// The frame in which the quietest split point is looked for, ms.
    pub split_frame_ms: f64,
}

/// `floor(ms * rate / 1000 + 0.5)` (saturating).
fn to_count(ms: f64, rate: u32) -> i64 {
    (ms * rate as f64 / 1000.0 + 0.5).floor() as i64
}

/// The settings in frames: gap, pad, min_len, max_len, split frame.
fn frames_of(p: &SegmentParams) -> Result<(i64, i64, i64, i64, usize), KernelError> {
    let checks: [(&'static str, f64, bool); 5] = [
        ("merge_gap_ms", p.merge_gap_ms, false),
        ("pad_ms", p.pad_ms, false),
        ("min_s", p.min_s, false),
        ("max_s", p.max_s, true),
        ("split_frame_ms", p.split_frame_ms, true),
    ];
    for (name, value, positive) in checks {
        let bad = !value.is_finite() || value < 0.0 || (positive && value == 0.0);
        if bad {
            let bound = if positive { "> 0" } else { ">= 0" };
            return Err(KernelError::InvalidParameter {
                name,
                reason: format!("must be finite and {bound}, got {value}"),
            });
        }
    }
    if p.min_s > p.max_s {
        return Err(KernelError::InvalidParameter {
            name: "min_s",
            reason: format!("min_s ({}) must not exceed max_s ({})", p.min_s, p.max_s),
        });
    }
    let rate = p.sample_rate;
    Ok((
        to_count(p.merge_gap_ms, rate),
        to_count(p.pad_ms, rate),
        to_count(p.min_s * 1000.0, rate),
        to_count(p.max_s * 1000.0, rate).max(1),
        to_count(p.split_frame_ms, rate).max(1) as usize,
    ))
}

/// Clip bounds `(start, end)` in frames of interleaved `channels`-channel
/// audio, from speech segments `(start_ms, end_ms)`.
pub fn segment_bounds<T: Sample>(
    x: &[T],
    channels: usize,
    segments: &[(f64, f64)],
    p: &SegmentParams,
) -> Result<Vec<(usize, usize)>, KernelError> {
    if channels == 0 || !x.len().is_multiple_of(channels) {
        return Err(KernelError::Shape(
            "audio must have at least one channel and whole frames".to_owned(),
        ));
    }
    if p.sample_rate == 0 {
        return Err(KernelError::InvalidInput {
            name: "sample_rate",
            reason: "must be a positive integer, got 0".to_owned(),
        });
    }
    let (gap, pad, min_len, max_len, flen) = frames_of(p)?;
    check_finite(x, channels)?;
    let frames = (x.len() / channels) as i64;
    let mut spans: Vec<(i64, i64)> = Vec::with_capacity(segments.len());
    for (index, &(a, b)) in segments.iter().enumerate() {
        if !(a.is_finite() && b.is_finite()) {
            return Err(KernelError::InvalidInput {
                name: "segments",
                reason: format!("segment {index} has a non-finite bound ({a}, {b})"),
            });
        }
        let s = to_count(a, p.sample_rate).clamp(0, frames);
        let e = to_count(b, p.sample_rate).clamp(0, frames);
        if e > s {
            spans.push((s, e));
        }
    }
    spans.sort_unstable();
    let merged = merge(&spans, gap);
    let padded: Vec<(i64, i64)> = merged
        .iter()
        .map(|&(s, e)| {
            (
                s.saturating_sub(pad).max(0),
                e.saturating_add(pad).min(frames),
            )
        })
        .collect();
    let padded = merge(&padded, 1);
    let mut split = Vec::with_capacity(padded.len());
    for &(s, e) in &padded {
        let (mut s, e) = (s as usize, e as usize);
        while (e - s) as i64 > max_len {
            let cut = quietest(x, channels, s, e, min_len, max_len, flen)?;
            split.push((s, cut));
            s = cut;
        }
        split.push((s, e));
    }
    Ok(short_clips(split, min_len, max_len, p.short))
}

/// Spans whose start is less than `gap` frames after the current end join it.
fn merge(spans: &[(i64, i64)], gap: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
    for &(s, e) in spans {
        match out.last_mut() {
            Some(last) if s.saturating_sub(last.1) < gap => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Where to cut `[s, e)`: the midpoint of its quietest candidate frame.
fn quietest<T: Sample>(
    x: &[T],
    channels: usize,
    s: usize,
    e: usize,
    min_len: i64,
    max_len: i64,
    flen: usize,
) -> Result<usize, KernelError> {
    let fl = flen as i64;
    let half = fl / 2;
    let inside = ((e - s) / flen) as i64;
    let by_mid = if max_len >= half {
        (max_len - half).div_euclid(fl) + 1
    } else {
        0
    };
    let count = inside.min(by_mid);
    let ceil_div = |a: i64| -> i64 { -((-a).div_euclid(fl)) };
    let mut first = ceil_div(min_len.max(1) - half).max(0);
    if first >= count {
        first = ceil_div(1 - half).max(0);
    }
    if first >= count {
        return Ok(s + max_len as usize);
    }
    let (first, count) = (first as usize, count as usize);
    let block = &x[(s + first * flen) * channels..(s + count * flen) * channels];
    let (sums, _) = frame_energies(block, channels, flen)?;
    let mut best = first;
    let mut best_energy = f64::INFINITY;
    for (k, &energy) in sums.iter().enumerate() {
        if energy <= best_energy {
            best = first + k;
            best_energy = energy;
        }
    }
    Ok(s + best * flen + half as usize)
}

/// Clips shorter than `min_len` dropped, or merged into the nearer neighbour.
fn short_clips(
    spans: Vec<(usize, usize)>,
    min_len: i64,
    max_len: i64,
    mode: Short,
) -> Vec<(usize, usize)> {
    let mut pending = spans;
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(pending.len());
    let len = |a: usize, b: usize| (b - a) as i64;
    let mut i = 0;
    while i < pending.len() {
        let (s, e) = pending[i];
        if len(s, e) >= min_len {
            out.push((s, e));
            i += 1;
            continue;
        }
        if mode == Short::Merge {
            let prev = out.last().copied();
            let next = pending.get(i + 1).copied();
            let prev_first = match (prev, next) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(pv), Some(nx)) => len(e, nx.0) >= len(pv.1, s),
            };
            let try_prev = |out: &mut Vec<(usize, usize)>| match out.last_mut() {
                Some(last) if len(last.0, e) <= max_len => {
                    last.1 = e;
                    true
                }
                _ => false,
            };
            let try_next = |pending: &mut Vec<(usize, usize)>| match pending.get_mut(i + 1) {
                Some(nx) if len(s, nx.1) <= max_len => {
                    nx.0 = s;
                    true
                }
                _ => false,
            };
            if prev_first {
                if !try_prev(&mut out) {
                    try_next(&mut pending);
                }
            } else if !try_next(&mut pending) {
                try_prev(&mut out);
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SegmentParams {
        SegmentParams {
            sample_rate: 1000,
            merge_gap_ms: 100.0,
            pad_ms: 10.0,
            min_s: 0.05,
            max_s: 1.0,
            short: Short::Drop,
            split_frame_ms: 20.0,
        }
    }

    #[test]
    fn close_segments_merge_and_get_padded() {
        let x = vec![0.1f32; 3000];
        let out = segment_bounds(&x, 1, &[(100.0, 200.0), (250.0, 400.0)], &params()).unwrap();
        assert_eq!(out, vec![(90, 410)]);
    }

    #[test]
    fn padding_stays_inside_the_input_and_short_clips_drop() {
        let x = vec![0.1f32; 500];
        let out = segment_bounds(&x, 1, &[(0.0, 30.0), (300.0, 495.0)], &params()).unwrap();
        assert_eq!(out, vec![(290, 500)]); // the first is 40 frames < 50
    }

    #[test]
    fn a_long_clip_is_cut_at_its_quietest_frame() {
        let mut x = vec![0.5f32; 3000];
        for v in &mut x[1400..1420] {
            *v = 0.0;
        }
        let mut p = params();
        p.pad_ms = 0.0;
        let out = segment_bounds(&x, 1, &[(0.0, 3000.0)], &p).unwrap();
        // from 0 every frame ties (the silence is beyond max_len): the last
        // candidate wins; from 990 the frames [1390, 1410) and [1410, 1430)
        // are half silent, the later one wins, cut at its midpoint 1420
        assert_eq!(out, vec![(0, 990), (990, 1420), (1420, 2410), (2410, 3000)]);
    }

    #[test]
    fn short_clips_merge_into_the_nearer_neighbour() {
        let x = vec![0.1f32; 3000];
        let mut p = params();
        p.short = Short::Merge;
        p.pad_ms = 0.0;
        p.merge_gap_ms = 0.0;
        let segs = [(100.0, 300.0), (350.0, 380.0), (900.0, 1000.0)];
        let out = segment_bounds(&x, 1, &segs, &p).unwrap();
        assert_eq!(out, vec![(100, 380), (900, 1000)]);
    }

    #[test]
    fn bad_settings_and_samples_are_refused() {
        let mut p = params();
        p.max_s = 0.0;
        assert!(matches!(
            segment_bounds(&[0.0f32; 10], 1, &[], &p),
            Err(KernelError::InvalidParameter { name: "max_s", .. })
        ));
        let mut p = params();
        p.min_s = 2.0;
        assert!(matches!(
            segment_bounds(&[0.0f32; 10], 1, &[], &p),
            Err(KernelError::InvalidParameter { name: "min_s", .. })
        ));
        assert!(matches!(
            segment_bounds(&[0.0f32, f32::NAN], 1, &[], &params()),
            Err(KernelError::NonFiniteSample { index: 1, .. })
        ));
        assert!(matches!(
            segment_bounds(&[0.0f32; 10], 1, &[(f64::NAN, 1.0)], &params()),
            Err(KernelError::InvalidInput {
                name: "segments",
                ..
            })
        ));
    }
}
