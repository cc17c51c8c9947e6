"""The embedded CPU engine: detectors that ship inside PyPI packages, mapped to rule verdicts."""
