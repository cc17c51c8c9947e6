"""The Moderator and the data engine's model stages on a Ray cluster, through Ray Data.

``icm moderate --engine ray`` runs one Ray Data pipeline::

    listing (driver)  ->  decode (Ray tasks)  ->  judge (an actor pool)  ->  result shards (write tasks)

The driver lists the inputs with :func:`icm.sources.iter_sources`, as a local run does (folders,
manifests and Parquet listings; local paths or any pyarrow filesystem URI such as ``s3://``):
paths only, the images are read in the decode tasks. What an existing output means, and what
``--resume`` skips, are the :class:`icm.sink.OutputRules` of a local run. Each judging actor
loads the policy and the backend once and judges with the very :class:`~icm.moderator.Moderator`
a local run uses, so the results are the same. The results go to
a folder (local or a URI) as JSONL shards, one :class:`~icm.results.ModerationResult` per line, or
as Parquet shards. A shard is written whole by one write task, after its images were judged; an
actor that dies is replaced by Ray and its batch judged again, so each image is written once.

:func:`map_on_ray` is the generic half: any per-item function, built once per actor by a factory,
over a list of items (the data engine's explain and Q-A stages go through it).

Ray is imported only here, and only when a function of this module runs.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from icm import storage
from icm.backends.base import Backend, BackendError
from icm.errors import InputError
from icm.lock import output_lock
from icm.media import MediaLimits
from icm.moderator import Moderator, decode_item
from icm.policy.load import load_policy
from icm.policy.schema import Policy
from icm.results import ModerationResult, PolicyRef
from icm.sink import OutputRules
from icm.sources import ImageItem, iter_sources
from icm.summary import RunSummary

if TYPE_CHECKING:
    import pyarrow as pa

#: a backend spec (``local``, ``vllm:MODEL`` ...), or a function that builds the backend: each actor
#: loads its own (a loaded model does not travel between processes)
BackendSpec = str | Callable[[], Backend]
Item = TypeVar("Item")
Result = TypeVar("Result")

#: the file suffixes of result shards
SHARD_SUFFIXES = (".jsonl", ".parquet")


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray run goes."""

    #: None: a Ray instance on this machine (or the one already started in this process);
    #: "auto": the cluster this machine belongs to; "ray://HOST:PORT": a remote cluster
    address: str | None = None
    #: judging actors, each with its own copy of the backend
    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    #: images per batch handed to an actor (and per decode task)
    batch_size: int = 16
    #: results per shard file, at least (the last shard of a run may hold fewer)
    rows_per_shard: int = 1000
    #: Ray Data's progress bars on stderr
    progress: bool = True
    #: Ray's own log lines on stderr (start-up, execution plans, its workers' logs); without it
    #: only Ray's errors are shown, and Ray's log files hold the rest
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise InputError("--actors must be at least 1")
        if self.batch_size < 1:
            raise InputError("--batch-size must be at least 1")
        if self.gpus_per_actor < 0 or self.cpus_per_actor < 0:
            raise InputError("--gpus-per-actor and CPUs per actor cannot be negative")


class RayMissingError(InputError):
    """--engine ray without Ray installed."""


def require_ray() -> None:
    try:
        import pyarrow  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayMissingError(
            f"--engine ray needs Ray Data ({exc.name} is not installed): pip install 'icm-assistant[ray]'"
        ) from exc


def connect(options: RayOptions) -> str | None:
    """Join (or start) the Ray cluster; returns the dashboard's address when there is one.

    A Ray instance this process already started (``ray.init`` in a notebook or a test) is used
    as it is.
    """
    require_ray()
    import ray

    if ray.is_initialized():
        return None
    level = logging.INFO if options.verbose else logging.ERROR
    context = ray.init(address=options.address, log_to_driver=options.verbose, logging_level=level)
    logging.getLogger("ray.data").setLevel(level)
    url = getattr(context, "dashboard_url", None)
    return f"http://{url}" if url and not str(url).startswith("http") else (url or None)


# -- inputs ---------------------------------------------------------------------------------


def list_images(sources: Iterable[str | Path]) -> list[dict[str, str]]:
    """Rows ``{"image": key, "location": path or URI}``, one per image of ``sources`` as
    :func:`icm.sources.iter_sources` lists them (the keys of a local run): what Ray Data carries."""
    return [_row(item) for item in iter_sources(sources)]


def _row(item: ImageItem) -> dict[str, str]:
    return {"image": item.key, "location": item.location}


def _decode_batch(batch: dict[str, np.ndarray], limits: MediaLimits) -> dict[str, np.ndarray]:
    """A Ray task: each image of the batch decoded (or its error), pickled for the judging actor."""
    decoded = []
    for key, location in zip(batch["image"], batch["location"], strict=True):
        value = decode_item(ImageItem.at(str(key), str(location)), limits)  # a URI is read here
        decoded.append(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    return {"image": batch["image"], "location": batch["location"], "decoded": _objects(decoded)}


def _objects(values: Sequence[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


class _Judge:
    """A Ray actor: the policy and the backend loaded once, then batch after batch judged (one
    ``judge_batch`` call per batch: one model batch where the backend can)."""

    def __init__(self, policy: Policy, backend: BackendSpec, backend_options: dict[str, Any],
                 limits: MediaLimits, rules: OutputRules, banks: str | None = None) -> None:
        loaded = backend if isinstance(backend, str) else backend()
        # each actor indexes the bank folder once (every machine of the cluster must see the folder)
        self.moderator = Moderator(policy, loaded, limits=limits, banks=banks, **backend_options)
        self.moderator.prepare()  # here, so that a backend that does not load stops the run at once
        self.rules = rules  # with the errors --out already holds for the images being retried

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [ImageItem.at(str(key), str(location))
                 for key, location in zip(batch["image"], batch["location"], strict=True)]
        results = self.moderator.judge_decoded(items, [pickle.loads(blob) for blob in batch["decoded"]])
        lines = [result.to_json() for result in results]
        # A retry that failed exactly as recorded is counted but not written again.
        repeats = [not self.rules.writes(result) for result in results]
        return {"image": batch["image"], "result": _objects(lines), "repeat": np.array(repeats, dtype=bool)}


# -- outputs -----------------------------------------------------------------------------------


def _shards(out: str) -> list[str]:
    """The result shards already in ``out`` (none when it does not exist)."""
    from pyarrow import fs

    filesystem, root = storage.filesystem(out)
    info = filesystem.get_file_info(root)
    if info.type == fs.FileType.NotFound:
        return []
    if info.type != fs.FileType.Directory:
        raise InputError(f"--out {out} is a file; with --engine ray, --out is a folder (or a URI) of shards")
    entries = filesystem.get_file_info(fs.FileSelector(root))
    return sorted(e.path for e in entries if e.type == fs.FileType.File and e.path.endswith(SHARD_SUFFIXES))


def read_result_lines(out: str | Path) -> Iterator[tuple[str, list[str]]]:
    """(shard, its lines) for every shard in ``out``: JSONL lines as written, and each Parquet
    row's ``result`` JSON as a line."""
    import pyarrow.parquet

    filesystem, _ = storage.filesystem(str(out))
    for shard in _shards(str(out)):
        if shard.endswith(".parquet"):
            table = pyarrow.parquet.read_table(shard, filesystem=filesystem, columns=["result"])
            yield shard, [line + "\n" for line in table.column("result").to_pylist()]
        else:
            with filesystem.open_input_stream(shard) as stream:
                text = stream.read().decode("utf-8", errors="replace")
            yield shard, text.splitlines(keepends=True)


def read_results(out: str | Path) -> Iterator[ModerationResult]:
    """Every result in a folder of shards written by :class:`RayModerator` (JSONL or Parquet)."""
    for _, lines in read_result_lines(out):
        for line in lines:
            if line.endswith("\n") and line.strip():  # a killed run's partial last line is no result
                yield ModerationResult.model_validate_json(line)


def _result_table(lines: list[str]) -> pa.Table:
    """Parquet rows: the result's key fields as columns to query, and the whole result as JSON."""
    import pyarrow as pa

    rows = [json.loads(line) for line in lines]
    return pa.table({
        "image": pa.array([r["image"] for r in rows], pa.string()),
        "sha256": pa.array([r.get("sha256") for r in rows], pa.string()),
        "policy_id": pa.array([r["policy"]["id"] for r in rows], pa.string()),
        "policy_version": pa.array([r["policy"]["version"] for r in rows], pa.int64()),
        "decision": pa.array([r["decision"] for r in rows], pa.string()),
        "error_code": pa.array([(r.get("error") or {}).get("code") for r in rows], pa.string()),
        "result": pa.array(lines, pa.string()),
    })


def _result_sink(out: str, parquet: bool, rows_per_shard: int) -> Any:
    """A Ray Data datasink that writes result shards and counts what it wrote (a RunSummary per
    write task, merged on the driver)."""
    import pyarrow.compute
    from ray.data.block import BlockAccessor
    from ray.data.datasource import BlockBasedFileDatasink

    class ResultShards(BlockBasedFileDatasink):
        def __init__(self) -> None:
            super().__init__(out, file_format="parquet" if parquet else "jsonl",
                             min_rows_per_file=rows_per_shard)
            self.summary = RunSummary()

        def write(self, blocks: Iterable[Any], ctx: Any) -> Any:
            blocks = list(blocks)
            super().write(blocks, ctx)
            summary = RunSummary()
            for block in blocks:
                for line in BlockAccessor.for_block(block).to_arrow().column("result").to_pylist():
                    summary.add(ModerationResult.model_validate_json(line))
            return summary

        def write_block(self, block: Any, block_index: int, ctx: Any) -> None:
            table = block.to_arrow()
            new = table.filter(pyarrow.compute.invert(table.column("repeat")))
            if new.num_rows:
                super().write_block(BlockAccessor.for_block(new), block_index, ctx)

        def write_block_to_file(self, block: Any, file: Any) -> None:
            lines = block.to_arrow().column("result").to_pylist()
            if parquet:
                import pyarrow.parquet

                pyarrow.parquet.write_table(_result_table(lines), file)
            else:
                file.write("".join(line + "\n" for line in lines).encode("utf-8"))

        def on_write_complete(self, write_result: Any) -> None:
            super().on_write_complete(write_result)
            for part in write_result.write_returns:
                if isinstance(part, RunSummary):
                    self.summary.merge(part)

    return ResultShards()


# -- the run -----------------------------------------------------------------------------------


@dataclass
class RayRun:
    """What :meth:`RayModerator.run` did: the summary, and where Ray's dashboard is."""

    summary: RunSummary
    dashboard: str | None = None
    shards: list[str] = field(default_factory=list)


class RayModerator:
    """The Moderator on a Ray cluster: the same policy, backend and results, judged by an actor pool.

    >>> run = RayModerator("general", "local", RayOptions(actors=2)).run(["photos/"], "results/")  # doctest: +SKIP
    >>> run.summary.decisions                                                                   # doctest: +SKIP
    """

    def __init__(
        self,
        policy: str | Path | Policy,
        backend: BackendSpec = "local",
        options: RayOptions | None = None,
        *,
        limits: MediaLimits | None = None,
        banks: str | Path | None = None,
        **backend_options: Any,
    ) -> None:
        """``banks``: a bank folder (see ``icm bank``), matched before the backend in every actor,
        as :class:`~icm.moderator.Moderator` matches it."""
        self.policy = load_policy(policy)
        self.banks = str(banks) if banks is not None else None
        self.backend = backend
        self.backend_options = backend_options
        self.options = options or RayOptions()
        self.limits = limits or MediaLimits()

    def run(
        self,
        sources: Iterable[str | Path],
        out: str | Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        retry_errors: bool = False,
        parquet: bool = False,
    ) -> RayRun:
        """Judge every image of ``sources`` into the folder (or URI) ``out``; the rules for ``out``
        are those of :meth:`Moderator.run`, for a folder of shards: one that holds results is
        continued (``resume``: images judged under this policy version, and unchanged files that
        failed to decode, are skipped) or emptied first (``overwrite``), never mixed silently."""
        require_ray()
        rules = OutputRules(resume=resume, overwrite=overwrite, retry_errors=retry_errors)
        out = str(out)
        items = list(iter_sources(sources))  # before anything is written: a missing folder leaves nothing
        if storage.is_uri(out):
            return self._run(items, out, rules, parquet)
        with output_lock(out):
            return self._run(items, out, rules, parquet)

    def _run(self, items: list[ImageItem], out: str, rules: OutputRules, parquet: bool) -> RayRun:
        started = time.perf_counter()
        shards = _shards(out)
        if shards:
            rules.refuse_existing(f"{out} holds result shards")
        if rules.overwrite:
            filesystem, _ = storage.filesystem(out)
            for shard in shards:
                filesystem.delete_file(shard)
        summary = RunSummary()
        rules.load(read_result_lines(out), PolicyRef(id=self.policy.id, version=self.policy.version))
        items = [item for item in items if not rules.skip(item, summary)]
        dashboard = connect(self.options) if items else None
        if items:
            sink = self._pipeline([_row(item) for item in items], out, parquet, rules.retried(items))
            summary.merge(sink.summary)
        summary.seconds = time.perf_counter() - started
        return RayRun(summary=summary, dashboard=dashboard, shards=_shards(out))

    def _pipeline(self, rows: list[dict[str, str]], out: str, parquet: bool,
                  rules: OutputRules) -> Any:
        import ray.data

        options = self.options
        ray.data.DataContext.get_current().enable_progress_bars = options.progress
        batch, blocks = _batching(len(rows), options)
        dataset = (
            ray.data.from_items(rows, override_num_blocks=blocks)
            .map_batches(partial(_decode_batch, limits=self.limits), batch_size=batch)
            .map_batches(
                _Judge,
                fn_constructor_args=(self.policy, self.backend, self.backend_options, self.limits, rules, self.banks),
                compute=ray.data.ActorPoolStrategy(size=options.actors),
                batch_size=batch,
                num_cpus=options.cpus_per_actor,
                # An actor that dies (a crash, a lost node) is started again and its batch judged
                # again: Ray Data's actor pools restart actors and retry their tasks without limit
                # by default (tests/scale/test_ray.py kills one to hold it to that).
                num_gpus=options.gpus_per_actor or None,
            )
        )
        sink = _result_sink(out, parquet, options.rows_per_shard)
        with _ray_failures():
            dataset.write_datasink(sink)
        return sink


class RayRunError(BackendError):
    """The run stopped on Ray: an actor could not be created (a backend that does not load), or a
    task failed for good. Per-image failures never get here: they are error records."""


@contextmanager
def _ray_failures() -> Iterator[None]:
    import ray.exceptions

    try:
        yield
    except ray.exceptions.RayError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        cause = next((line for line in reversed(lines) if "Error:" in line), lines[-1] if lines else "")
        raise RayRunError(f"the run failed on Ray ({type(exc).__name__}): {cause}") from exc


def _batching(items: int, options: RayOptions) -> tuple[int, int]:
    """(batch size, blocks): batches no larger than needed to give every actor work, and a block per
    batch so that they spread over the pool."""
    batch = max(1, min(options.batch_size, -(-items // options.actors)))
    return batch, max(1, -(-items // batch))


# -- any per-item function ---------------------------------------------------------------------


class _Apply:
    """A Ray actor that builds its function once (a model loaded once) and applies it per item."""

    def __init__(self, factory: Callable[[], Callable[[Any], Any]]) -> None:
        self.function = factory()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [pickle.dumps(self.function(pickle.loads(blob))) for blob in batch["item"]]
        return {"index": batch["index"], "result": _objects(results)}


def map_on_ray(
    factory: Callable[[], Callable[[Item], Result]],
    items: Sequence[Item],
    options: RayOptions,
    on_result: Callable[[], None] | None = None,
) -> list[Result]:
    """``factory()(item)`` for every item, on an actor pool (``factory`` runs once per actor);
    the results in the order of ``items``. ``factory`` and the items must pickle."""
    if not items:
        return []
    import ray.data

    connect(options)
    ray.data.DataContext.get_current().enable_progress_bars = options.progress
    rows = [{"index": i, "item": pickle.dumps(item)} for i, item in enumerate(items)]
    batch, blocks = _batching(len(rows), options)
    dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        _Apply,
        fn_constructor_args=(factory,),
        compute=ray.data.ActorPoolStrategy(size=options.actors),
        batch_size=batch,
        num_cpus=options.cpus_per_actor,
        num_gpus=options.gpus_per_actor or None,
    )
    results: list[Any] = [None] * len(items)
    with _ray_failures():
        for row in dataset.iter_rows():
            results[int(row["index"])] = pickle.loads(row["result"])
            if on_result is not None:
                on_result()
    return results
