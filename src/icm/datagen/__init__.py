"""The data engine: instruction samples, importers, the generation pipeline and exporters."""

from icm.datagen.dataset import read_samples, write_dataset
from icm.datagen.sample import Message, Sample, SampleKind, SampleMeta

__all__ = ["Message", "Sample", "SampleKind", "SampleMeta", "read_samples", "write_dataset"]
