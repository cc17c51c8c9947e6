"""The settings of one ``icm data generate`` run; the field descriptions are the CLI's help."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

#: questions asked per explanation, by kind
DEFAULT_COUNTS = {"yes_no": 3, "what": 2, "how": 1, "multiple_choice": 2}

#: A run "produced almost nothing" when a stage that every image goes through (explain, the
#: explanation filter, qa) passes on fewer than this share of the images it was given.
MIN_YIELD = 0.05


class GenerateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: Path = Field(description="A folder with one sub-folder per label, or an image,label manifest.")
    out: Path = Field(description="Dataset directory to write (with its cache).")
    policy: str = Field("icm-r1", description="Primary policy; explanations are written under it.")
    family: list[str] | None = Field(
        None, description="Rule sets for policy augmentation (repeat); default: the policy's built-in family."
    )
    mllm: str = Field(
        "local", description="Explaining model: local (detector facts), transformers:DIR, openai:MODEL@URL."
    )
    llm: str = Field(
        "llama-cpp:smollm2",
        description="Question-writing model: llama-cpp:PATH.gguf, llama-cpp:smollm2, openai:MODEL@URL.",
    )
    label_map: Path | None = Field(None, description="YAML: label -> criterion ids.")
    validation: float = Field(0.1, ge=0.0, le=0.9, description="Share of images held out.")
    parquet: bool = Field(False, description="Also write Parquet splits (needs `datasets`).")
    concurrency: int = Field(1, ge=1, description="Model calls in flight (for servers).")
    qa_counts: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_COUNTS),
        description="Questions asked per explanation, by kind (yes_no, what, how, multiple_choice).",
    )
    relax: bool = Field(
        True, description="Also write each violating image under the policy with its violated rules left out."
    )
    limit: int | None = Field(None, ge=1, description="Only the first N images.")
    resume: bool = Field(False, description="Continue a run in OUT, reusing its cached model answers.")
    cache: str | None = Field(
        None, description="Where model answers are cached (default OUT/cache): a folder, or a filesystem URI "
        "(s3://, gs://) that every machine of a Ray cluster shares, so that --resume works across them.",
    )

    @property
    def cache_root(self) -> str | Path:
        return self.cache or self.out / "cache"
