"""icm.scale.ray: the Moderator on a local Ray cluster started by the test (no external service).

One Ray instance per module (two CPUs, no dashboard); its worker processes import tests/ too, for
the fault test's backend.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from corpus import write_awkward, write_broken
from helpers import render_text, sample_image

from icm import Moderator
from icm.results import ModerationResult
from icm.scale.ray import RayModerator, RayOptions, list_images, map_on_ray, read_results
from icm.sink import OutputExistsError
from icm.sources import SourceError

TESTS = Path(__file__).resolve().parents[1]
OPTIONS = RayOptions(actors=1, batch_size=4, progress=False)


@pytest.fixture(scope="module", autouse=True)
def local_cluster() -> Iterator[None]:
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), path) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        os.environ["PYTHONPATH"] = path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The media corpus (broken and awkward files) and a few ordinary images, one with a phone number."""
    root = tmp_path_factory.mktemp("corpus")
    write_broken(root / "broken")
    write_awkward(root / "awkward")
    sample_image("coffee").resize((320, 240)).save(root / "coffee.jpg")
    sample_image("chelsea").resize((320, 240)).save(root / "cat.png")
    render_text("call 0161 496 0000").save(root / "phone.png")
    return root


def _comparable(result: ModerationResult) -> dict[str, object]:
    return result.model_dump(mode="json", exclude={"timing_ms"})


def _by_image(results: Iterator[ModerationResult] | list[ModerationResult]) -> dict[str, ModerationResult]:
    table: dict[str, ModerationResult] = {}
    for result in results:
        assert result.image not in table, f"{result.image} written twice"
        table[result.image] = result
    return table


def _assert_same(ray_results: dict[str, ModerationResult], local: dict[str, ModerationResult]) -> None:
    assert ray_results.keys() == local.keys()
    for image, expected in local.items():
        got = ray_results[image]
        assert got.decision == expected.decision, image
        for a, b in zip(got.verdicts, expected.verdicts, strict=True):
            if b.probability is None:
                assert a.probability is None
            else:
                assert a.probability == pytest.approx(b.probability, abs=1e-6), image
        assert _comparable(got) == _comparable(expected), image


def test_results_equal_a_local_run_on_the_media_corpus(corpus: Path, tmp_path: Path) -> None:
    local = _by_image(Moderator("general").stream([corpus]))
    assert sum(r.error is not None for r in local.values()) == 9  # the broken files, each an error record

    run = RayModerator("general", "local", RayOptions(actors=2, batch_size=4, progress=False)).run(
        [corpus], tmp_path / "out")

    _assert_same(_by_image(read_results(tmp_path / "out")), local)
    assert run.summary.judged == len(local) - 9 and run.summary.failed == 9
    assert sum(run.summary.decisions.values()) == len(local)
    assert run.shards and all(s.endswith(".jsonl") for s in run.shards)


def test_an_actor_killed_mid_run_is_replaced_and_its_batch_judged_again(corpus: Path, tmp_path: Path) -> None:
    from scale.workers import DiesOnce

    marker = tmp_path / "died"
    backend = partial(DiesOnce, victim="phone.png", marker=marker)
    sources = sorted(corpus.glob("*.*"))
    run = RayModerator("general", backend, OPTIONS).run(sources, tmp_path / "out")

    assert marker.exists(), "the actor judging phone.png was not killed"
    assert int(marker.read_text()) > 0
    results = _by_image(read_results(tmp_path / "out"))
    assert sorted(results) == sorted(str(p) for p in sources)
    assert all(r.error is None for r in results.values())
    assert results[str(corpus / "phone.png")].decision.value != "allow"
    assert run.summary.judged == len(sources)


def test_resume_judges_only_what_the_output_lacks(corpus: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    shutil.copytree(corpus, images)
    out = tmp_path / "out"
    absent = tmp_path / "absent.jpg"
    first = sorted((images / "awkward").iterdir())[:3] + [images / "broken" / "empty.jpg", absent]
    RayModerator("general", "local", OPTIONS).run(first, out)

    with pytest.raises(OutputExistsError):
        RayModerator("general", "local", OPTIONS).run([images, absent], out)
    run = RayModerator("general", "local", OPTIONS).run([images, absent], out, resume=True)

    assert run.summary.skipped == 3  # the judged images
    assert run.summary.unchanged_errors == 1  # empty.jpg failed to decode and has not changed
    assert run.summary.errors["not_found"] == 1  # absent.jpg was tried again, and failed as recorded
    results = _by_image(read_results(out))  # each image exactly once: absent.jpg's repeat is not written
    assert sorted(results) == sorted([row["image"] for row in list_images([images])] + [str(absent)])
    assert run.summary.judged + run.summary.failed - run.summary.unchanged_errors == len(results) - 4

    again = RayModerator("general", "local", OPTIONS).run([images, absent], out, resume=True)
    assert again.summary.skipped == len(results) - 10 and again.summary.judged == 0
    assert again.summary.failed == 10  # the 9 broken files, unchanged, and absent.jpg, still missing
    assert again.shards == run.shards  # nothing new to write
    assert len(list(read_results(out))) == len(results)


def test_parquet_shards_hold_the_same_results(corpus: Path, tmp_path: Path) -> None:
    sources = [corpus / "coffee.jpg", corpus / "phone.png", corpus / "broken" / "bomb.png"]
    local = _by_image(Moderator("general").stream(sources))
    run = RayModerator("general", "local", OPTIONS).run(sources, tmp_path / "out", parquet=True)

    assert run.shards and all(s.endswith(".parquet") for s in run.shards)
    _assert_same(_by_image(read_results(tmp_path / "out")), local)
    table = pq.read_table(run.shards[0])
    assert {"image", "decision", "error_code", "policy_id", "policy_version", "result"} <= set(table.column_names)
    row = {r["image"]: r for r in table.to_pylist()}[str(corpus / "broken" / "bomb.png")]
    assert row["error_code"] == "too_large" and json.loads(row["result"])["error"]["code"] == "too_large"


def test_overwrite_replaces_the_shards(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    RayModerator("general", "local", OPTIONS).run([corpus / "coffee.jpg", corpus / "cat.png"], out)
    run = RayModerator("general", "local", OPTIONS).run([corpus / "coffee.jpg"], out, overwrite=True)
    assert [r.image for r in read_results(out)] == [str(corpus / "coffee.jpg")]
    assert len(run.shards) == 1


def test_listings_from_uris_and_parquet(corpus: Path, tmp_path: Path) -> None:
    folder = list_images([f"file://{corpus}"])
    assert len(folder) == len(list_images([corpus]))
    assert all(row["image"].startswith("file:///") for row in folder)

    listing = tmp_path / "listing.parquet"
    pq.write_table(pa.table({"image": [str(corpus / "coffee.jpg"), "absent.jpg"]}), listing)
    rows = list_images([listing])
    assert rows[0] == {"image": str(corpus / "coffee.jpg"), "location": str(corpus / "coffee.jpg")}
    assert rows[1]["location"] == str(tmp_path / "absent.jpg")  # relative to the listing

    with pytest.raises(SourceError):
        list_images(["file:///no/such/folder"])
    pq.write_table(pa.table({"path": ["a.jpg"]}), tmp_path / "wrong.parquet")
    with pytest.raises(SourceError, match="'image' column"):
        list_images([tmp_path / "wrong.parquet"])


def test_uri_images_are_read_in_the_tasks(corpus: Path, tmp_path: Path) -> None:
    uri = f"file://{corpus / 'phone.png'}"
    local = Moderator("general").moderate(corpus / "phone.png")
    run = RayModerator("general", "local", OPTIONS).run([uri, f"file://{corpus}/absent.png"], f"file://{tmp_path}/out")
    results = _by_image(read_results(f"file://{tmp_path}/out"))
    assert results[uri].decision == local.decision and results[uri].sha256 == local.sha256
    assert results[f"file://{corpus}/absent.png"].error.code.value == "not_found"  # type: ignore[union-attr]
    assert run.summary.judged == 1


def test_a_listed_uri_no_filesystem_reads_is_that_image_s_error(corpus: Path, tmp_path: Path) -> None:
    """An image column may hold any URL (https:// is none of pyarrow's filesystems): that row is an
    error record, as a missing file is, and the run goes on."""
    listing = tmp_path / "listing.parquet"
    web = "https://example.com/a.jpg"
    pq.write_table(pa.table({"image": [str(corpus / "coffee.jpg"), web]}), listing)
    run = RayModerator("general", "local", OPTIONS).run([listing], tmp_path / "out")
    results = _by_image(read_results(tmp_path / "out"))
    assert results[web].error is not None and results[web].error.code.value == "unreadable"
    assert web in results[web].error.message
    assert results[str(corpus / "coffee.jpg")].error is None
    assert run.summary.judged == 1 and run.summary.failed == 1


def test_map_on_ray_keeps_the_order() -> None:
    from scale.workers import squarer

    assert map_on_ray(squarer, list(range(23)), OPTIONS) == [x * x for x in range(23)]


def test_cli_engine_ray(corpus: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from icm.cli.app import app

    runner = CliRunner()
    out = tmp_path / "out"
    sources = [str(corpus / "coffee.jpg"), str(corpus / "phone.png"), str(corpus / "broken" / "empty.jpg")]
    result = runner.invoke(app, ["moderate", *sources, "--engine", "ray", "--actors", "1", "--batch-size", "2",
                                 "--out", str(out), "--fail-on", "block"])
    assert result.exit_code == 3, result.output  # phone.png is blocked
    assert "images/s" in result.output and "results:" in result.output
    assert sorted(r.image for r in read_results(out)) == sorted(sources)

    again = runner.invoke(app, ["moderate", *sources, "--engine", "ray", "--out", str(out), "--resume"])
    assert again.exit_code == 1, again.output  # empty.jpg still has no judgement
    assert "skipped (already judged)" in again.output
    assert len(list(read_results(out))) == 3

    missing = runner.invoke(app, ["moderate", sources[0], "--engine", "ray"])
    assert missing.exit_code == 2 and "--out" in missing.output
    printed = runner.invoke(app, ["moderate", sources[0], "--engine", "ray", "--out", str(out), "--format", "jsonl"])
    assert printed.exit_code == 2 and "--format" in printed.output
    local_parquet = runner.invoke(app, ["moderate", sources[0], "--parquet", "--out", str(tmp_path / "r.jsonl")])
    assert local_parquet.exit_code == 2 and "--engine ray" in local_parquet.output


def test_data_generate_fans_the_model_stages_out(tmp_path: Path) -> None:
    """The explain and Q-A stages on Ray actors (the local explainer, SmolLM2 through llama.cpp in
    each actor) write the dataset a local run writes; the cache lives at a filesystem URI and a
    resumed run finds every answer there."""
    from icm.datagen.config import GenerateConfig
    from icm.datagen.dataset import read_samples
    from icm.datagen.pipeline import Pipeline

    images = tmp_path / "labelled"
    for label, name in (("upper_normal", "coffee"), ("whole_leg", "chelsea")):
        (images / label).mkdir(parents=True)
        sample_image(name).resize((256, 192)).save(images / label / f"{name}.jpg")
    (images / "whole_leg" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    counts = {"yes_no": 1, "what": 0, "how": 0, "multiple_choice": 0}

    def config(out: str, **more: object) -> GenerateConfig:
        return GenerateConfig(images=images, out=tmp_path / out, qa_counts=counts, validation=0.0, **more)  # type: ignore[arg-type]

    def on_ray(factory, items, tick):  # type: ignore[no-untyped-def]
        return map_on_ray(factory, items, RayOptions(actors=1, batch_size=2, progress=False), on_result=tick)

    local = Pipeline(config("local")).run()
    cache = f"file://{tmp_path}/shared-cache"
    fanned = Pipeline(config("ray", cache=cache), fan_out=on_ray).run()

    def stage_counts(report: dict) -> dict:  # type: ignore[type-arg]
        return {name: {k: v for k, v in stage.items() if k != "seconds"} for name, stage in report["stages"].items()}

    assert stage_counts(fanned) == stage_counts(local)
    assert fanned["stages"]["explain"]["in"] == 3 and fanned["stages"]["explain"]["out"] == 2
    assert [s.model_dump() for s in read_samples(tmp_path / "ray")] == [
        s.model_dump() for s in read_samples(tmp_path / "local")]
    assert len(list((tmp_path / "shared-cache" / "explain").iterdir())) == 2  # the broken image is not cached

    again = Pipeline(config("ray", cache=cache, resume=True), fan_out=on_ray).run()
    assert again["stages"]["explain"]["cached"] == 2 and again["stages"]["qa"]["cached"] == 2


def test_a_backend_that_cannot_load_stops_the_run_with_its_reason(corpus: Path, tmp_path: Path) -> None:
    from scale.workers import unloadable

    from icm.errors import ModelError
    from icm.scale.ray import RayRunError

    with pytest.raises(RayRunError, match="no model directory at '/models/missing'") as caught:
        RayModerator("general", unloadable, OPTIONS).run([corpus / "coffee.jpg"], tmp_path / "out")
    assert isinstance(caught.value, ModelError)  # the CLI's one handler: "error: ...", exit 2
    assert list(read_results(tmp_path / "out")) == []


def test_banks_decide_copies_in_the_actors(tmp_path: Path) -> None:
    """A bank folder given to the Ray run is matched in every actor before the backend, as in a
    local run: the copy is decided by the bank (no model time), the other image by the engine."""
    from icm.banks.folder import BankFolder
    from icm.banks.hashing import hash_image
    from icm.banks.model import BankConfig, BankEntry
    from icm.media import load_image
    from icm.results import KNOWN_CONTENT

    original = sample_image("astronaut").convert("RGB")
    original.save(tmp_path / "astronaut.png")
    folder = BankFolder(tmp_path / "banks")
    bank = folder.create(BankConfig(name="KNOWN_BAD", kind="deny", rules=["spam-contact"]))
    pdq = hash_image(load_image(tmp_path / "astronaut.png")).pdq[0]
    bank.add([BankEntry(content_id="case-7", hash=pdq, added_by="test")])
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    original.resize((original.width // 2, original.height // 2)).save(uploads / "copy.jpg", quality=50)
    sample_image("coffee").resize((320, 240)).save(uploads / "coffee.jpg")

    RayModerator("general", "local", OPTIONS, banks=tmp_path / "banks").run([uploads], tmp_path / "out")

    results = {Path(r.image).name: r for r in read_results(tmp_path / "out")}
    copy = {v.rule_id: v for v in results["copy.jpg"].verdicts}["spam-contact"]
    assert copy.verdict.value == "violates"
    assert [(e.criterion, e.signal, e.text) for e in copy.evidence] == [(KNOWN_CONTENT, "hash:KNOWN_BAD", "case-7")]
    assert results["copy.jpg"].decision.value == "block"
    assert all(e.criterion != KNOWN_CONTENT for v in results["coffee.jpg"].verdicts for e in v.evidence)
