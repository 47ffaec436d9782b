"""Data sets, download, the synthetic field-recording set, the feature cache and augmentation.

``dataset(name, root, **options)`` is the single entry point; every loader returns a
:class:`ClipList` of :class:`Clip`.
"""
from .base import Clip, ClipList, MetadataError, available_datasets, dataset
from .cache import FeatureCache, default_cache_dir, load_features
from .synth import generate_synth, synth_classes, synth_clip, write_synth

__all__ = ["Clip", "ClipList", "MetadataError", "available_datasets", "dataset", "FeatureCache",
           "default_cache_dir", "load_features", "generate_synth", "synth_classes", "synth_clip", "write_synth"]
