"""melfront: differentiable mel-spectrogram frontends and few-data experiments for audio classifiers."""
from importlib.metadata import PackageNotFoundError, version as _version

from .errors import (AudioError, CheckpointError, DataError, DivergenceError, MelfrontError, ParameterError,
                     StudyError, TrainingError)
from .audio import load_audio, resample
from .functional import deltas, mel_filterbank
from .frontends import MelSpectrogram, Spectrogram
from .frontends import (FRONTENDS, Chain, Decibel, Frontend, Log10000, LogEPS, LogFloor, LogLearn, LogOffset,
                        MinMax, PCEN, PowerLearn, Stack, frontend)
from .frontends import StreamingMelSpectrogram, StreamingPCEN  # chunked PCEN / mel with explicit state
from .adaptive import AdaptiveFilterbank  # importing melfront.adaptive registers the "adaptive" frontend
from . import data    # melfront.data.dataset(name, root, ...)
from . import models  # melfront.models.build(name, ...), melfront.models.Classifier
from . import mst     # MSTModel (Tax et al. 2017); registers the "mst" frontend
from .train import load_classifier  # rebuild a trained classifier from a checkpoint: (classifier, config)
from . import plotting  # melfront.plotting.specshow(S, sample_rate=..., hop_length=..., y_axis='mel')


try:
    __version__ = _version("melfront")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"
