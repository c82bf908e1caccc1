//! Several audio kernels run over one input in one call: the fused native
//! chain of a pipeline's consecutive native nodes.
//!
//! A [`Chain`] is a list of [`Link`]s in execution order; each link runs one
//! [`Step`] (the kernel of a ChannelMix, Resample, VAD, FormatConverter,
//! Multiply or Add node) on the chain's input or on an earlier link's audio.
//! Every step calls the very kernel its node calls alone, with the node's
//! rules around it (a mono input passes ChannelMix unchanged, a conversion to
//! the input's own format only checks the samples), so the values equal the
//! node-by-node path bit for bit. What the chain adds is that the buffers of
//! outputs nobody keeps (a downmix, a resampled signal feeding a VAD and a
//! conversion) are reused from one input to the next.

use std::time::Instant;

use super::arith::{Op, combine_vec};
use super::convert::convert_vec;
use super::mix::{downmix_mean_into, select_channel};
use super::resample::{Quality, resample_into};
use super::vad::{Segment, VadParams, vad_segments};
use super::{KernelError, Sample, check_finite};

/// A sample format: the element type of a [`Buf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// float32.
    F32,
    /// float64.
    F64,
    /// int16.
    I16,
    /// int32.
    I32,
}

/// Interleaved samples owned by the chain.
#[derive(Debug, Clone, PartialEq)]
pub enum Buf {
    /// float32 samples.
    F32(Vec<f32>),
    /// float64 samples.
    F64(Vec<f64>),
    /// int16 samples.
    I16(Vec<i16>),
    /// int32 samples.
    I32(Vec<i32>),
}

/// Interleaved samples borrowed from the caller or from a [`Buf`].
#[derive(Debug, Clone, Copy)]
pub enum View<'a> {
    /// float32 samples.
    F32(&'a [f32]),
    /// float64 samples.
    F64(&'a [f64]),
    /// int16 samples.
    I16(&'a [i16]),
    /// int32 samples.
    I32(&'a [i32]),
}

/// Calls `$body` with `$x` bound to the samples of a [`View`] and `$T` to their type.
macro_rules! with_view {
    ($view:expr, |$x:ident : $T:ident| $body:expr) => {
        match $view {
            View::F32($x) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            View::F64($x) => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
            View::I16($x) => {
                #[allow(dead_code)]
                type $T = i16;
                $body
            }
            View::I32($x) => {
                #[allow(dead_code)]
                type $T = i32;
                $body
            }
        }
    };
}

impl Buf {
    /// How many samples it holds.
    pub fn len(&self) -> usize {
        with_view!(self.view(), |x: T| x.len())
    }

    /// Whether it holds no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory it holds (its capacity).
    fn capacity_bytes(&self) -> usize {
        match self {
            Buf::F32(v) => v.capacity() * 4,
            Buf::F64(v) => v.capacity() * 8,
            Buf::I16(v) => v.capacity() * 2,
            Buf::I32(v) => v.capacity() * 4,
        }
    }

    /// Gives back memory beyond its samples (a reused buffer can be larger).
    fn shrink(&mut self) {
        match self {
            Buf::F32(v) => v.shrink_to_fit(),
            Buf::F64(v) => v.shrink_to_fit(),
            Buf::I16(v) => v.shrink_to_fit(),
            Buf::I32(v) => v.shrink_to_fit(),
        }
    }

    /// The samples, borrowed.
    pub fn view(&self) -> View<'_> {
        match self {
            Buf::F32(v) => View::F32(v),
            Buf::F64(v) => View::F64(v),
            Buf::I16(v) => View::I16(v),
            Buf::I32(v) => View::I32(v),
        }
    }
}

/// What one link computes.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// ChannelMixNode: the mean of the channels (`None`) or one channel.
    Mix {
        /// The channel kept (`select` mode), or `None` for the mean.
        select: Option<usize>,
    },
    /// ResampleNode.
    Resample {
        /// The rate of the output, Hz.
        target_rate: i64,
        /// The filter preset.
        quality: Quality,
    },
    /// VADNode (without a refining model): speech segments.
    Vad {
        /// The settings; `sample_rate` is taken from each input.
        params: VadParams,
        /// The rate the node requires (`params.sample_rate` of the node), if any.
        expected_rate: Option<u32>,
    },
    /// FormatConverterNode.
    Convert {
        /// The output format.
        target: Format,
    },
    /// MultiplyNode / AddNode on one audio input.
    Combine {
        /// Multiply or add.
        op: Op,
        /// The factor or the offset.
        param: f64,
    },
}

/// A step and where its input comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// What it computes.
    pub step: Step,
    /// `None`: the chain's input; `Some(i)`: the audio of link `i` (an earlier one).
    pub input: Option<usize>,
}

/// What a link gave for one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// The audio of its own input, unchanged.
    Same,
    /// New audio.
    Audio {
        /// The samples, interleaved.
        samples: Buf,
        /// Channels per frame.
        channels: usize,
        /// Samples per second.
        rate: u32,
    },
    /// Speech segments (a VAD).
    Segments(Vec<Segment>),
}

/// One input through the chain: each link's value and how long its step took.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The value of each link, in link order.
    pub values: Vec<Value>,
    /// Nanoseconds each link's step took.
    pub elapsed_ns: Vec<u64>,
}

/// What a caller keeps of one input's [`Run`] ([`Chain::run_keeping`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Held {
    /// The chain's input itself (every link on the way passed it on unchanged).
    Input,
    /// The audio in [`Kept::audio`] at this link (several kept links may share it).
    Audio(usize),
    /// Speech segments.
    Segments(Vec<Segment>),
}

/// The kept values of one input's run; the chain reuses the buffers of the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    /// For each link: `None` when it was not asked for, else its value.
    pub values: Vec<Option<Held>>,
    /// By link: the audio `(samples, channels, rate)` a [`Held::Audio`] names.
    pub audio: Vec<Option<(Buf, usize, u32)>>,
    /// Nanoseconds each link's step took.
    pub elapsed_ns: Vec<u64>,
}

/// A link refused its input: which one, and its kernel's error.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainError {
    /// The link.
    pub link: usize,
    /// Why.
    pub error: KernelError,
}

/// The largest buffer a [`Chain`] keeps for the next input: 16 MiB (about 87 s of
/// 48 kHz float32 mono); larger ones are freed.
pub const MAX_SCRATCH_BYTES: usize = 16 << 20;

/// Links run in order over one input at a time, reusing the buffers of the
/// outputs that the caller gives back ([`Chain::recycle`]).
#[derive(Debug)]
pub struct Chain {
    links: Vec<Link>,
    scratch: Vec<Option<Buf>>,
}

impl Chain {
    /// A chain of `links`; each must read the chain's input or an earlier link's audio.
    pub fn new(links: Vec<Link>) -> Result<Self, KernelError> {
        for (i, link) in links.iter().enumerate() {
            if let Some(from) = link.input {
                if from >= i {
                    return Err(KernelError::InvalidParameter {
                        name: "links",
                        reason: format!("link {i} reads link {from}, which does not run before it"),
                    });
                }
                if matches!(links[from].step, Step::Vad { .. }) {
                    return Err(KernelError::InvalidParameter {
                        name: "links",
                        reason: format!("link {i} reads link {from}, a VAD, which gives no audio"),
                    });
                }
            }
        }
        let scratch = vec![None; links.len()];
        Ok(Chain { links, scratch })
    }

    /// The links.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Runs every link over one input of `channels`-channel audio at `rate` Hz.
    pub fn run(&mut self, input: View<'_>, channels: usize, rate: u32) -> Result<Run, ChainError> {
        let mut values: Vec<Value> = Vec::with_capacity(self.links.len());
        let mut elapsed_ns = Vec::with_capacity(self.links.len());
        for (i, link) in self.links.iter().enumerate() {
            let start = Instant::now();
            let (x, ch, r) = audio_of(&self.links, &values, link.input, (input, channels, rate));
            let value = step(&link.step, x, ch, r, self.scratch[i].take())
                .map_err(|error| ChainError { link: i, error })?;
            values.push(value);
            elapsed_ns.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        Ok(Run { values, elapsed_ns })
    }

    /// [`Chain::run`], keeping the values of the links where `keep` is true; the
    /// buffers of the other links are kept for the next input.
    pub fn run_keeping(
        &mut self,
        input: View<'_>,
        channels: usize,
        rate: u32,
        keep: &[bool],
    ) -> Result<Kept, ChainError> {
        let Run {
            mut values,
            elapsed_ns,
        } = self.run(input, channels, rate)?;
        let n = values.len();
        let mut held: Vec<Option<Held>> = vec![None; n];
        let mut audio: Vec<Option<(Buf, usize, u32)>> = vec![None; n];
        for i in (0..n).filter(|&i| keep.get(i).copied().unwrap_or(false)) {
            // The link whose value this is: itself, or the first one up its inputs
            // that did not pass its input on.
            let mut root = Some(i);
            while let Some(r) = root {
                if audio[r].is_some() || values[r] != Value::Same {
                    break;
                }
                root = self.links[r].input;
            }
            held[i] = Some(match root {
                None => Held::Input,
                Some(r) if audio[r].is_some() => Held::Audio(r), // taken for an earlier link
                Some(r) => match std::mem::replace(&mut values[r], Value::Same) {
                    Value::Audio {
                        mut samples,
                        channels,
                        rate,
                    } => {
                        samples.shrink(); // a reused buffer may be larger than its samples
                        audio[r] = Some((samples, channels, rate));
                        Held::Audio(r)
                    }
                    Value::Segments(segments) => Held::Segments(segments),
                    Value::Same => unreachable!("the root passes no input on"),
                },
            });
        }
        self.recycle(values);
        Ok(Kept {
            values: held,
            audio,
            elapsed_ns,
        })
    }

    /// Keeps the audio buffers of `values` (a [`Run`]'s, less what the caller took)
    /// for the next input.
    /// Buffers larger than [`MAX_SCRATCH_BYTES`] are dropped instead, so one long
    /// input does not keep its memory for the chain's life.
    pub fn recycle(&mut self, values: Vec<Value>) {
        for (i, value) in values.into_iter().enumerate() {
            if let (Value::Audio { samples, .. }, Some(slot)) = (value, self.scratch.get_mut(i)) {
                *slot = (samples.capacity_bytes() <= MAX_SCRATCH_BYTES).then_some(samples);
            }
        }
    }
}

/// The audio a link reads: the chain's input or an earlier link's (following
/// links that passed their input on unchanged).
fn audio_of<'a>(
    links: &[Link],
    values: &'a [Value],
    mut from: Option<usize>,
    input: (View<'a>, usize, u32),
) -> (View<'a>, usize, u32) {
    while let Some(i) = from {
        match &values[i] {
            Value::Audio {
                samples,
                channels,
                rate,
            } => return (samples.view(), *channels, *rate),
            Value::Same => from = links[i].input,
            // Chain::new refuses a link reading a VAD.
            Value::Segments(_) => unreachable!("a link reads a VAD's output"),
        }
    }
    input
}

/// The vector of `scratch` to write into again (a new one when it holds another type).
fn reuse<T: ChainSample>(scratch: Option<Buf>) -> Vec<T> {
    scratch.and_then(T::unwrap).unwrap_or_default()
}

/// A [`Sample`] type a [`Buf`] can hold.
pub trait ChainSample: Sample {
    /// The vector as a [`Buf`].
    fn wrap(vec: Vec<Self>) -> Buf;
    /// The vector of `buf`, if it holds this type.
    fn unwrap(buf: Buf) -> Option<Vec<Self>>;
}

macro_rules! chain_sample {
    ($T:ty, $variant:ident) => {
        impl ChainSample for $T {
            fn wrap(vec: Vec<Self>) -> Buf {
                Buf::$variant(vec)
            }
            fn unwrap(buf: Buf) -> Option<Vec<Self>> {
                match buf {
                    Buf::$variant(vec) => Some(vec),
                    _ => None,
                }
            }
        }
    };
}
chain_sample!(f32, F32);
chain_sample!(f64, F64);
chain_sample!(i16, I16);
chain_sample!(i32, I32);

/// One step over `channels`-channel audio `x` at `rate` Hz.
fn step(
    step: &Step,
    x: View<'_>,
    channels: usize,
    rate: u32,
    scratch: Option<Buf>,
) -> Result<Value, KernelError> {
    let audio = |samples: Buf, channels: usize, rate: u32| Value::Audio {
        samples,
        channels,
        rate,
    };
    match step {
        Step::Mix { select } => {
            if channels == 1 && select.unwrap_or(0) == 0 {
                return Ok(Value::Same); // the mean of one channel is that channel
            }
            with_view!(x, |s: T| {
                let out = match select {
                    None => {
                        let mut out = reuse::<T>(scratch);
                        downmix_mean_into(s, channels, &mut out)?;
                        out
                    }
                    Some(channel) => select_channel(s, channels, *channel)?,
                };
                Ok(audio(ChainSample::wrap(out), 1, rate))
            })
        }
        Step::Resample {
            target_rate,
            quality,
        } => with_view!(x, |s: T| {
            let mut out = reuse::<f32>(scratch);
            resample_into(
                s,
                channels,
                i64::from(rate),
                *target_rate,
                *quality,
                &mut out,
            )?;
            let target =
                u32::try_from(*target_rate).map_err(|_| KernelError::InvalidParameter {
                    name: "target_rate",
                    reason: format!("{target_rate} Hz does not fit 32 bits"),
                })?;
            Ok(audio(Buf::F32(out), channels, target))
        }),
        Step::Vad {
            params,
            expected_rate,
        } => {
            if let Some(expected) = expected_rate
                && *expected != rate
            {
                return Err(KernelError::InvalidInput {
                    name: "sample_rate",
                    reason: format!("input is {rate} Hz but params.sample_rate is {expected}"),
                });
            }
            let params = VadParams {
                sample_rate: rate,
                ..*params
            };
            with_view!(x, |s: T| Ok(Value::Segments(vad_segments(
                s, channels, &params
            )?)))
        }
        Step::Convert { target } => with_view!(x, |s: T| {
            let out = match target {
                Format::F32 => convert::<T, f32>(s, channels)?,
                Format::F64 => convert::<T, f64>(s, channels)?,
                Format::I16 => convert::<T, i16>(s, channels)?,
                Format::I32 => convert::<T, i32>(s, channels)?,
            };
            Ok(out.map_or(Value::Same, |buf| audio(buf, channels, rate)))
        }),
        Step::Combine { op, param } => with_view!(x, |s: T| {
            let out = combine_vec(&[s], *op, *param)?;
            Ok(audio(ChainSample::wrap(out), channels, rate))
        }),
    }
}

/// `x` converted to `D`, or `None` when it already is `D` (its samples checked
/// finite, as the node does).
fn convert<S: Sample, D: ChainSample>(
    x: &[S],
    channels: usize,
) -> Result<Option<Buf>, KernelError> {
    if std::any::TypeId::of::<S>() == std::any::TypeId::of::<D>() {
        check_finite(x, channels)?;
        return Ok(None);
    }
    Ok(Some(ChainSample::wrap(convert_vec::<S, D>(x, channels)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::mix::downmix_mean;
    use crate::kernels::resample::resample;

    fn speech_prep() -> Vec<Link> {
        let vad = VadParams {
            threshold_db: -60.0,
            context_ms: 30.0,
            noise_floor_percentile: Some(20.0),
            hangover_ms: 90.0,
            min_silence_ms: 200.0,
            ..VadParams::default()
        };
        vec![
            Link {
                step: Step::Mix { select: None },
                input: None,
            },
            Link {
                step: Step::Resample {
                    target_rate: 16000,
                    quality: Quality::High,
                },
                input: Some(0),
            },
            Link {
                step: Step::Vad {
                    params: vad,
                    expected_rate: None,
                },
                input: Some(1),
            },
            Link {
                step: Step::Convert {
                    target: Format::I16,
                },
                input: Some(1),
            },
        ]
    }

    fn signal(frames: usize, channels: usize, seed: u32) -> Vec<i16> {
        (0..frames * channels)
            .map(|i| {
                let t = i as f64 / channels as f64;
                let burst = if (i / channels / 4000).is_multiple_of(2) {
                    8000.0
                } else {
                    40.0
                };
                ((t * 0.05 * f64::from(seed + 1)).sin() * burst) as i16
            })
            .collect()
    }

    #[test]
    fn each_link_equals_its_kernel_alone() {
        let mut chain = Chain::new(speech_prep()).unwrap();
        for (frames, channels, seed) in [(48000, 2, 1), (0, 2, 2), (1, 1, 3), (30000, 1, 4)] {
            let x = signal(frames, channels, seed);
            let run = chain.run(View::I16(&x), channels, 48000).unwrap();
            let mono = if channels == 1 {
                x.clone()
            } else {
                downmix_mean(&x, channels).unwrap()
            };
            let y = resample(&mono, 1, 48000, 16000, Quality::High).unwrap();
            let Step::Vad { params, .. } = chain.links()[2].step else {
                unreachable!()
            };
            let params = VadParams {
                sample_rate: 16000,
                ..params
            };
            let segments = vad_segments(&y, 1, &params).unwrap();
            let pcm: Vec<i16> = convert_vec(&y, 1).unwrap();
            if channels == 1 {
                assert_eq!(run.values[0], Value::Same);
            } else {
                assert_eq!(
                    run.values[0],
                    Value::Audio {
                        samples: Buf::I16(mono),
                        channels: 1,
                        rate: 48000
                    }
                );
            }
            assert_eq!(
                run.values[1],
                Value::Audio {
                    samples: Buf::F32(y),
                    channels: 1,
                    rate: 16000
                }
            );
            assert_eq!(run.values[2], Value::Segments(segments));
            assert_eq!(
                run.values[3],
                Value::Audio {
                    samples: Buf::I16(pcm),
                    channels: 1,
                    rate: 16000
                }
            );
            assert_eq!(run.elapsed_ns.len(), 4);
            chain.recycle(run.values);
        }
    }

    #[test]
    fn recycled_buffers_do_not_leak_into_the_next_output() {
        let mut chain = Chain::new(speech_prep()).unwrap();
        let long = signal(96000, 2, 7);
        let short = signal(4800, 2, 8);
        let first = chain.run(View::I16(&long), 2, 48000).unwrap();
        chain.recycle(first.values);
        let again = chain.run(View::I16(&short), 2, 48000).unwrap();
        let mut fresh = Chain::new(speech_prep()).unwrap();
        assert_eq!(
            again,
            Run {
                elapsed_ns: again.elapsed_ns.clone(),
                ..fresh.run(View::I16(&short), 2, 48000).unwrap()
            }
        );
    }

    #[test]
    fn a_refusal_names_its_link() {
        let mut links = speech_prep();
        links[2].step = Step::Vad {
            params: VadParams::default(),
            expected_rate: Some(8000),
        };
        let mut chain = Chain::new(links).unwrap();
        let err = chain
            .run(View::I16(&signal(4800, 1, 1)), 1, 48000)
            .unwrap_err();
        assert_eq!(err.link, 2);
        let x = [0.5f32, f32::NAN];
        let err = chain.run(View::F32(&x), 1, 48000).unwrap_err();
        assert_eq!(err.link, 1);
        assert!(matches!(
            err.error,
            KernelError::NonFiniteSample { index: 1, .. }
        ));
    }

    #[test]
    fn a_conversion_to_the_same_format_checks_and_passes_on() {
        let links = vec![
            Link {
                step: Step::Convert {
                    target: Format::F32,
                },
                input: None,
            },
            Link {
                step: Step::Combine {
                    op: Op::Multiply,
                    param: 0.5,
                },
                input: Some(0),
            },
            Link {
                step: Step::Mix { select: Some(1) },
                input: Some(1),
            },
        ];
        let mut chain = Chain::new(links).unwrap();
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let run = chain.run(View::F32(&x), 2, 8000).unwrap();
        assert_eq!(run.values[0], Value::Same);
        assert_eq!(
            run.values[2],
            Value::Audio {
                samples: Buf::F32(vec![1.0, 2.0]),
                channels: 1,
                rate: 8000
            }
        );
        let err = chain
            .run(View::F32(&[1.0, f32::INFINITY]), 2, 8000)
            .unwrap_err();
        assert_eq!(err.link, 0);
    }

    #[test]
    fn kept_values_share_their_audio_and_the_rest_is_reused() {
        let mut chain = Chain::new(speech_prep()).unwrap();
        let x = signal(48000, 2, 5);
        let whole = chain.run(View::I16(&x), 2, 48000).unwrap();
        let kept = chain
            .run_keeping(View::I16(&x), 2, 48000, &[false, false, true, true])
            .unwrap();
        assert_eq!(kept.values[0], None);
        assert_eq!(kept.values[1], None);
        assert_eq!(
            kept.values[2],
            Some(Held::Segments(match &whole.values[2] {
                Value::Segments(s) => s.clone(),
                other => panic!("{other:?}"),
            }))
        );
        assert_eq!(kept.values[3], Some(Held::Audio(3)));
        let Value::Audio { samples, .. } = &whole.values[3] else {
            panic!()
        };
        assert_eq!(kept.audio[3].as_ref().map(|a| &a.0), Some(samples));
        assert!(chain.scratch[0].is_some() && chain.scratch[1].is_some());
        assert!(chain.scratch[3].is_none());

        // A conversion to the format it has passes its input's audio on: both
        // links name the same buffer; a mono input passes ChannelMix as it is.
        let links = vec![
            Link {
                step: Step::Mix { select: None },
                input: None,
            },
            Link {
                step: Step::Combine {
                    op: Op::Add,
                    param: 1.0,
                },
                input: Some(0),
            },
            Link {
                step: Step::Convert {
                    target: Format::F32,
                },
                input: Some(1),
            },
        ];
        let mut chain = Chain::new(links).unwrap();
        let kept = chain
            .run_keeping(View::F32(&[0.5, 0.25]), 1, 8000, &[true, true, true])
            .unwrap();
        assert_eq!(
            kept.values,
            vec![
                Some(Held::Input),
                Some(Held::Audio(1)),
                Some(Held::Audio(1))
            ]
        );
        assert_eq!(kept.audio[1], Some((Buf::F32(vec![1.5, 1.25]), 1, 8000)));
        let kept = chain
            .run_keeping(View::F32(&[0.5, 0.25]), 1, 8000, &[false, false, true])
            .unwrap();
        assert_eq!(kept.values[2], Some(Held::Audio(1)));
    }

    #[test]
    fn a_long_input_s_buffers_are_not_kept_for_the_next() {
        let links = vec![
            Link {
                step: Step::Mix { select: None },
                input: None,
            },
            Link {
                step: Step::Combine {
                    op: Op::Multiply,
                    param: 2.0,
                },
                input: Some(0),
            },
        ];
        let mut chain = Chain::new(links).unwrap();
        let frames = MAX_SCRATCH_BYTES / 2 + 1; // its int16 downmix is one sample too many
        let long = vec![1i16; frames * 2];
        let kept = chain
            .run_keeping(View::I16(&long), 2, 8000, &[false, true])
            .unwrap();
        assert_eq!(kept.audio[1].as_ref().map(|a| a.0.len()), Some(frames));
        assert!(chain.scratch[0].is_none());
        let short = vec![1i16; 200];
        chain
            .run_keeping(View::I16(&short), 2, 8000, &[false, true])
            .unwrap();
        assert!(matches!(&chain.scratch[0], Some(Buf::I16(v)) if v.len() == 100));
    }

    #[test]
    fn links_must_read_earlier_audio() {
        let mut links = speech_prep();
        links[1].input = Some(1);
        assert!(Chain::new(links).is_err());
        let mut links = speech_prep();
        links[3].input = Some(2);
        assert!(Chain::new(links).is_err());
    }
}
