//! Channel mixing (ChannelMixNode): downmix to mono, or keep one channel.
//!
//! `mean`: per frame `acc = f64(ch0)`, `acc = acc + f64(ch_k)` in channel
//! order, `acc = acc / channels`, then [`Sample::from_f64`]. `select`: the
//! chosen channel unchanged. Exactly `reference.channel_mix`.

use super::{KernelError, Sample};
use crate::avx2_dispatch;

#[inline(always)]
fn mean_impl<T: Sample>(x: &[T], channels: usize, out: &mut [T]) {
    let divisor = channels as f64;
    if channels == 2 {
        for (o, pair) in out.iter_mut().zip(x.chunks_exact(2)) {
            *o = T::mean2(pair[0], pair[1]);
        }
        return;
    }
    for (o, frame) in out.iter_mut().zip(x.chunks_exact(channels)) {
        let mut acc = frame[0].to_f64();
        for &v in &frame[1..] {
            acc += v.to_f64();
        }
        *o = T::from_f64(acc / divisor);
    }
}

avx2_dispatch!(fn mean_dispatch<T: Sample>(x: &[T], channels: usize, out: &mut [T]) => mean_impl);

/// The mean of the channels of interleaved audio, one sample per frame.
pub fn downmix_mean<T: Sample>(x: &[T], channels: usize) -> Result<Vec<T>, KernelError> {
    let mut out = Vec::new();
    downmix_mean_into(x, channels, &mut out)?;
    Ok(out)
}

/// [`downmix_mean`] into `out` (resized), reusing its memory where it is large enough.
pub fn downmix_mean_into<T: Sample>(
    x: &[T],
    channels: usize,
    out: &mut Vec<T>,
) -> Result<(), KernelError> {
    check_layout(x, channels)?;
    // Every element is written below: an earlier output's values need no clearing.
    out.resize(x.len() / channels, T::default());
    mean_dispatch(x, channels, out);
    Ok(())
}

/// One channel of interleaved audio.
pub fn select_channel<T: Sample>(
    x: &[T],
    channels: usize,
    channel: usize,
) -> Result<Vec<T>, KernelError> {
    check_layout(x, channels)?;
    if channel >= channels {
        return Err(KernelError::InvalidParameter {
            name: "channel",
            reason: format!("channel {channel} out of range for {channels} channel(s)"),
        });
    }
    Ok(x.iter().skip(channel).step_by(channels).copied().collect())
}

fn check_layout<T>(x: &[T], channels: usize) -> Result<(), KernelError> {
    if channels == 0 {
        return Err(KernelError::Shape("audio has 0 channels".to_owned()));
    }
    if !x.len().is_multiple_of(channels) {
        return Err(KernelError::Shape(format!(
            "{} samples do not divide into {channels} channels",
            x.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_of_stereo_and_three_channels() {
        assert_eq!(
            downmix_mean(&[0.25f32, 0.75, 1.0, 0.0], 2).unwrap(),
            vec![0.5, 0.5]
        );
        assert_eq!(downmix_mean(&[1i16, 2, 4], 3).unwrap(), vec![2]);
        assert_eq!(downmix_mean(&[1i16, 2], 2).unwrap(), vec![2]); // 1.5 -> 2 (half even)
        assert_eq!(downmix_mean(&[3i16, 2], 2).unwrap(), vec![2]); // 2.5 -> 2
        assert_eq!(downmix_mean::<f32>(&[], 2).unwrap(), Vec::<f32>::new());
    }

    #[test]
    fn integer_stereo_mean_equals_the_f64_rule_for_every_pair_sum() {
        // Every sum of two i16 occurs for some pair (a, b); check them all against
        // the generic rule, including both ends of the range and every half.
        for a in [i16::MIN, -1, 0, 1, i16::MAX] {
            for b in i16::MIN..=i16::MAX {
                let want = i16::from_f64((a as f64 + b as f64) / 2.0);
                assert_eq!(i16::mean2(a, b), want, "{a} {b}");
            }
        }
    }

    #[test]
    fn select_and_errors() {
        assert_eq!(select_channel(&[1i32, 2, 3, 4], 2, 1).unwrap(), vec![2, 4]);
        assert!(select_channel(&[1i32, 2], 2, 2).is_err());
        assert!(downmix_mean(&[1.0f64, 2.0, 3.0], 2).is_err());
        assert!(downmix_mean(&[1.0f64], 0).is_err());
    }
}
