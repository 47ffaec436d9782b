"""Pure tensor functions: STFT, mel filterbank, deltas, compressions and PCEN.

Every function works on any leading dimensions ``(..., time)`` or ``(..., n_mels, frames)``, on
any device, in float32 or float64, and is differentiable with autograd. Argument names and
defaults follow librosa, whose results they reproduce (see ``tests/test_librosa_parity.py``).
One concept per module:

- :mod:`~melfront.functional.spectral`: mel scale, filterbank, windows, STFT, mel spectrogram, deltas,
  :func:`num_frames`;
- :mod:`~melfront.functional.compression`: log, dB, power law, min-max;
- :mod:`~melfront.functional.pcen`: PCEN and its smoother, on the exact scan of
  :mod:`~melfront.functional.scan`;
- :mod:`~melfront.functional.params`: checks of tensor arguments shared by the compressions.

>>> import torch
>>> from melfront import functional as F
>>> mel = F.melspectrogram(torch.zeros(1, 8000), 8000, n_fft=256, hop_length=128, n_mels=16)
>>> F.power_to_db(mel).shape, F.num_frames(8000, 256, 128)
(torch.Size([1, 16, 63]), 63)
"""
from .compression import (LOG_EPS, log_floor, log_floor_plain, log_offset, log_offset_plain, minmax, minmax_plain,
                          power_compress, power_compress_plain, power_to_db, power_to_db_plain)
from .params import band_param, check_spec
from .pcen import PCEN_INITS, SCAN_CHUNK, pcen, pcen_plain, pcen_smoother, pcen_time_constant_to_s, plain_mode, start_state
from .spectral import (DEFAULT_CHUNK_FRAMES, MAX_FILTERBANK_ELEMENTS, check_stft_args, deltas, fft_frequencies,
                       get_window, hz_to_mel, mel_filterbank, mel_frequencies, mel_to_hz, melspectrogram,
                       melspectrogram_chunked, num_frames, spectrogram, spectrogram_plain)

__all__ = [
    "hz_to_mel", "mel_to_hz", "mel_frequencies", "fft_frequencies", "mel_filterbank", "get_window",
    "spectrogram", "spectrogram_plain", "melspectrogram", "deltas", "num_frames", "check_stft_args", "MAX_FILTERBANK_ELEMENTS",
    "melspectrogram_chunked", "DEFAULT_CHUNK_FRAMES",
    # compressions
    "LOG_EPS", "log_offset", "power_to_db", "log_floor", "power_compress", "minmax", "log_offset_plain",
    "power_to_db_plain", "log_floor_plain", "power_compress_plain", "minmax_plain",
    "PCEN_INITS", "SCAN_CHUNK", "pcen_time_constant_to_s", "pcen_smoother", "pcen", "pcen_plain", "plain_mode",
    "start_state",
    "check_spec", "band_param",
]

