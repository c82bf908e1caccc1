//! Runtime CPU feature dispatch.
//!
//! The crate is compiled for the baseline target (x86-64: SSE2), and hot loops
//! get a second copy compiled with `#[target_feature(enable = "avx2")]`
//! (or `"avx2,fma"` where fused multiply-add is allowed), chosen at run time
//! with these probes. Bit-exact kernels never enable `fma`: Rust does not
//! contract `a * b + c` on its own, so their results do not depend on the CPU.

/// Whether this CPU has AVX2.
#[inline]
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has AVX2 and FMA.
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has AVX-512F.
#[inline]
pub fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `$name` calling `$imp` (an `#[inline(always)]` function) through an
/// AVX2-compiled copy when the CPU has AVX2, else the baseline copy.
///
/// ```ignore
/// avx2_dispatch!(pub fn scale(x: &[f32], out: &mut [f32]) => scale_impl);
/// ```
#[macro_export]
macro_rules! avx2_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident <$($g:ident : $bound:path),*> ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $imp:ident) => {
        $(#[$meta])*
        $vis fn $name<$($g: $bound),*>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2<$($g: $bound),*>($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                if $crate::kernels::simd::has_avx2() {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}
