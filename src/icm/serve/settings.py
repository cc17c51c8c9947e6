"""Service settings: flags of ``icm serve`` and ``ICM_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from icm.dsa import StatementFacts


class ServeSettings(BaseSettings):
    """Everything the service reads at start. Each field is also the variable ``ICM_<FIELD>``
    (lists as JSON, e.g. ``ICM_POLICIES='["general", "icm-r1"]'``)."""

    model_config = SettingsConfigDict(env_prefix="ICM_", extra="forbid")

    policies: list[str] = Field(
        default_factory=lambda: ["general"],
        description="Built-in policy names or YAML files served at start; the first is the default.",
    )
    backend: str = Field("local", description="Backend spec: local, transformers:DIR, openai:MODEL@URL ...")
    backend_options: Path | None = Field(None, description="YAML file of backend keywords.")
    db: str = Field(
        "sqlite:///icm-serve.db",
        description="SQLAlchemy URL of the store: a SQLite file, or postgresql+psycopg://USER:PASS@HOST/DB.",
    )
    migrate_on_start: bool = Field(
        True, description="Bring the store's schema up to date at start (turn off when several "
        "replicas share one database and `icm serve migrate` runs once before them)."
    )
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)

    # -- limits ------------------------------------------------------------------------------
    max_body_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest request body (413 above it)."
    )
    max_pixels: int = Field(80_000_000, ge=1, description="Largest image, width x height.")
    max_frames: int = Field(8, ge=1, description="Frames judged in an animated image.")
    max_decoded_pixels: int = Field(
        400_000_000, ge=1, description="Pixels decoding an image may cost: frames decoded x canvas (413 above it)."
    )
    min_side: int = Field(16, ge=1, description="Smallest side an image may have.")
    request_timeout: float = Field(
        60.0, gt=0, description="Seconds a request may wait for its judgement (504 after)."
    )
    workers: int = Field(2, ge=1, description="Images judged at the same time (worker threads).")
    queue_size: int = Field(
        32, ge=0, description="Requests that may wait for a worker; beyond it the answer is 503."
    )
    batch_size: int | None = Field(
        None, ge=1, description="Most images judged in one backend call when requests arrive together; "
        "default: 8 where the backend puts several images in one forward pass (vllm; transformers with "
        "image_batch > 1, its default on a GPU), else 1.",
    )
    batch_wait_ms: float = Field(
        5.0, ge=0, description="How long the first request of a batch waits for others (milliseconds)."
    )
    rate_limit: str | None = Field(
        "600/minute", description="Requests per key, in the `limits` notation (`10/second`, "
        "`600/minute`); empty for none."
    )
    rate_limit_storage: str = Field(
        "memory://", description="Where rate-limit counters live: memory:// (one process) or a "
        "shared store such as redis://host:6379 for several replicas."
    )
    retry_after: int = Field(1, ge=1, description="Seconds a 503 (queue full) tells callers to wait.")

    # -- images and retention ----------------------------------------------------------------
    keep_images: Literal["disk", "database", "none"] = Field(
        "disk",
        description="Where images with a decision other than allow are kept (named by their sha256) "
        "for review: files under image_dir, rows of the database, or nowhere.",
    )
    image_dir: Path = Field(Path("icm-images"), description="The folder of kept images (keep_images=disk).")
    retention_days: int | None = Field(
        None, ge=1, description="Results and images older than this are deleted by `icm serve purge`."
    )

    # -- remote images and browsers ----------------------------------------------------------
    url_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts whose https image URLs the service may fetch: HOST (port 443 only) or "
        "HOST:PORT; none by default (no server-side fetching, so no SSRF).",
    )
    url_http_hosts: list[str] = Field(
        default_factory=list,
        description="HOST:PORT entries whose plain-http image URLs the service may fetch (no TLS: "
        "only for a trusted internal server; each entry names its port); none by default.",
    )
    url_timeout: float = Field(
        10.0, gt=0, description="Seconds one image URL fetch may take in all, waiting for a fetcher included."
    )
    url_workers: int = Field(
        4, ge=1, description="Image URLs fetched at the same time, by threads of their own (the others wait, "
        "within url_timeout).",
    )
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS; none by default.")

    # -- review console ----------------------------------------------------------------------
    review_sample: float = Field(
        0.02, ge=0, le=1, description="Share of allow and block decisions also sent to the review "
        "queue, for quality checks (their images are kept)."
    )
    review_double: float = Field(
        0.1, ge=0, le=1, description="Share of queued items reviewed twice, blind, for agreement statistics."
    )
    review_lease_seconds: int = Field(
        600, ge=10, description="How long an opened queue item stays one reviewer's."
    )
    review_session_hours: float = Field(12.0, gt=0, description="Lifetime of a console login.")
    review_max_failures: int = Field(
        5, ge=1, description="Failed logins in a row after which an account is locked."
    )
    review_lockout_minutes: float = Field(15.0, gt=0, description="How long a locked account stays locked.")

    # -- DSA statements of reasons -------------------------------------------------------------
    dsa_territorial_scope: list[str] | None = Field(
        default_factory=lambda: ["EEA"], description="Where restrictions apply, for statements of reasons: "
        "EU/EEA country codes, or EU or EEA; a request's dsa.territorial_scope overrides it.",
    )
    dsa_account_type: Literal["business", "private"] | None = Field(
        None, description="The uploaders' account type, for statements of reasons (a request may say).",
    )
    dsa_content_language: str | None = Field(
        None, description="ISO 639-1 code of the content's language, for statements of reasons.",
    )

    log_level: str = "info"
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="Log lines as JSON objects or as plain text; auto: text on a terminal, JSON otherwise."
    )

    @field_validator("policies")
    @classmethod
    def _some_policy(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("serve at least one policy")
        return value

    @field_validator("url_hosts", "url_http_hosts")
    @classmethod
    def _origins(cls, value: list[str], info: ValidationInfo) -> list[str]:
        from icm.serve.fetch import parse_origin

        for entry in value:
            parse_origin(entry, default_port=443 if info.field_name == "url_hosts" else None)
        return value

    @field_validator("dsa_territorial_scope")
    @classmethod
    def _territories(cls, value: list[str] | None) -> list[str] | None:
        from icm.dsa.mapping import territories

        return territories(value)

    def statement_defaults(self) -> StatementFacts:
        """What statements of reasons say where a request did not."""
        from icm.dsa import StatementFacts

        return StatementFacts(territorial_scope=self.dsa_territorial_scope, account_type=self.dsa_account_type,
                              content_language=self.dsa_content_language)

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", "none", "0") else value
