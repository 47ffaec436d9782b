"""Data sets, download, the synthetic field-recording set, the feature cache and augmentation.

``dataset(name, root, **options)`` is the single entry point; every loader returns a
:class:`ClipList` of :class:`Clip`. Loaders register themselves with
:func:`~melfront.data.registry.register_dataset` when their module is imported, which happens here.

>>> from melfront.data import available_datasets
>>> sorted(available_datasets())
['esc10', 'esc50', 'folder', 'fsdd', 'synth', 'tut2017', 'urbansound8k']
"""
from ..errors import MetadataError
from .base import Clip, ClipList
from .registry import available_datasets, dataset, register_dataset
# the loader modules: importing them registers their data sets
from . import esc50, urbansound8k, tut, fsdd, folder, synth  # noqa: F401,I001  (registration, in this order)
from .cache import FeatureCache, default_cache_dir, load_features
from .synth import generate_synth, synth_classes, synth_clip, write_synth

__all__ = ["Clip", "ClipList", "MetadataError", "available_datasets", "dataset", "register_dataset", "FeatureCache",
           "default_cache_dir", "load_features", "generate_synth", "synth_classes", "synth_clip", "write_synth"]
