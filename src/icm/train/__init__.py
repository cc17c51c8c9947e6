"""Training: instruction-tune a VLM into an ICM-Assistant (``icm train``) and calibrate the local
engine's thresholds on labelled images (``icm calibrate``).

Only the configuration imports here; ``icm.train.sft`` brings in torch, transformers, trl and peft
when a run starts.
"""

from icm.train.config import ConfigError, Method, MixSource, TrainConfig

__all__ = ["ConfigError", "Method", "MixSource", "TrainConfig"]
