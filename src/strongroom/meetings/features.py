"""Speaker features from raw audio with numpy/scipy only: MFCC statistics and a pitch estimate.

A voice differs from another mostly in vocal-tract shape (the spectral envelope, which MFCCs summarise)
and in pitch. Loudness is left out (c0 is dropped) so a speaker moving from the microphone stays one.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy.fft import dct, irfft, rfft

FRAME_S = 0.025
HOP_S = 0.010
N_FFT = 512
N_MELS = 40
N_MFCC = 20
F_MIN, F_MAX = 60.0, 7600.0

FloatArray = npt.NDArray[np.float64]


@lru_cache(maxsize=4)
def mel_filterbank(sample_rate: int, n_fft: int = N_FFT, n_mels: int = N_MELS) -> FloatArray:
    """Triangular mel filters (HTK mel scale) as an (n_mels, n_fft // 2 + 1) matrix."""

    def hz_to_mel(hz: FloatArray) -> FloatArray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: FloatArray) -> FloatArray:
        return np.asarray(700.0 * (10.0 ** (mel / 2595.0) - 1.0), dtype=np.float64)

    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(F_MIN)), hz_to_mel(np.array(F_MAX)), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    bank = np.zeros((n_mels, bins.size))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (bins - lo) / (mid - lo)
        falling = (hi - bins) / (hi - mid)
        bank[m] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


def frames(samples: npt.NDArray[np.float32], sample_rate: int) -> FloatArray:
    """Overlapping Hamming-windowed frames, shape (n_frames, frame_length)."""
    length = int(FRAME_S * sample_rate)
    hop = int(HOP_S * sample_rate)
    if samples.size < length:
        samples = np.pad(samples, (0, length - samples.size))
    count = 1 + (samples.size - length) // hop
    index = np.arange(length)[None, :] + hop * np.arange(count)[:, None]
    return np.asarray(samples[index].astype(np.float64) * np.hamming(length), dtype=np.float64)


def mfcc(samples: npt.NDArray[np.float32], sample_rate: int) -> tuple[FloatArray, FloatArray]:
    """MFCCs c1..c19 per frame and each frame's log energy (used to keep voiced frames only)."""
    windowed = frames(samples, sample_rate)
    power = np.abs(np.fft.rfft(windowed, n=N_FFT)) ** 2
    mel = np.log(power @ mel_filterbank(sample_rate).T + 1e-10)
    cepstra = dct(mel, type=2, axis=1, norm="ortho")[:, 1:N_MFCC]
    energy = np.log(np.sum(windowed**2, axis=1) + 1e-10)
    return cepstra, energy


def pitch(samples: npt.NDArray[np.float32], sample_rate: int, fmin: float = 60.0, fmax: float = 400.0) -> FloatArray:
    """Per-frame F0 in Hz (0 where unvoiced): normalised autocorrelation over 50 ms frames.

    The first lag reaching 85% of the best peak is taken (then climbed to its local maximum), which avoids
    the octave-down errors of plain peak picking.
    """
    length, hop = int(0.05 * sample_rate), int(HOP_S * sample_rate)
    if samples.size < length:
        return np.zeros(0)
    count = 1 + (samples.size - length) // hop
    index = np.arange(length)[None, :] + hop * np.arange(count)[:, None]
    chunk = samples[index].astype(np.float32)
    chunk -= chunk.mean(axis=1, keepdims=True)
    size = 1 << (2 * length - 1).bit_length()
    spectrum = rfft(chunk, n=size, axis=1)
    corr = irfft(np.abs(spectrum) ** 2, n=size, axis=1)[:, :length].astype(np.float64)
    corr = corr / (corr[:, :1] + 1e-10) * (length / (length - np.arange(length)))
    lag_min, lag_max = int(sample_rate / fmax), int(sample_rate / fmin)
    region = corr[:, lag_min:lag_max]
    peak = region.max(axis=1)
    voiced = peak >= 0.5
    first = np.argmax(region >= 0.85 * peak[:, None], axis=1)
    # climb to the local maximum: the first lag at or after ``first`` where the curve stops rising
    falling = np.zeros_like(region, dtype=bool)
    falling[:, :-1] = region[:, 1:] <= region[:, :-1]
    falling[:, -1] = True
    falling &= np.arange(region.shape[1])[None, :] >= first[:, None]
    best = np.argmax(falling, axis=1)
    f0 = np.where(voiced, sample_rate / (best + lag_min), 0.0)
    return f0


def speaker_features(samples: npt.NDArray[np.float32], sample_rate: int) -> FloatArray:
    """One vector for a stretch of speech: mean MFCCs over its louder frames, then log median F0 (last)."""
    cepstra, energy = mfcc(samples, sample_rate)
    keep = energy >= np.percentile(energy, 40) if energy.size > 4 else np.ones_like(energy, dtype=bool)
    f0 = pitch(samples, sample_rate)
    f0 = f0[f0 > 0]
    log_f0 = np.log(np.median(f0)) if f0.size else np.nan
    return np.concatenate([cepstra[keep].mean(axis=0), [log_f0]])
