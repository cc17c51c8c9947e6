"""Banks on disk: the configuration's rules, the folder (append, read since a mark, remove), plain
hash lists (import/export, a malformed line refused naming it) and the ``icm bank`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import sample_image
from typer.testing import CliRunner

from icm.banks.folder import BankFolder
from icm.banks.lists import list_lines, parse_list
from icm.banks.model import BankConfig, BankEntry, BankError, BankExists, BankNotFound, SignalType
from icm.cli.app import app

runner = CliRunner()
PDQ_A = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
PDQ_B = "e64cc9d91c623882f8d1f1d9a398e78c9f199b3bd83924f2b7e11e0bf861b064"


def test_configuration_rules() -> None:
    deny = BankConfig(name="KNOWN_BAD", kind="deny", rules=["nudity"], dsa_category="PORNOGRAPHY")
    assert (deny.distance, deny.quality_floor, deny.dihedral) == (31, 50, False)
    assert BankConfig(name="NCMEC_MD5", kind="deny", rules=["csam"], signal="md5").distance == 0
    for bad in (
        {"name": "known_bad", "kind": "deny", "rules": ["x"]},  # not CAPS
        {"name": "TWO", "kind": "deny", "rules": ["x", "y"]},  # a deny bank names one rule
        {"name": "MD5", "kind": "deny", "rules": ["x"], "signal": "md5", "distance": 4},
        {"name": "SAFE", "kind": "allow", "rules": ["x"], "dsa_category": "SCOPE"},
    ):
        with pytest.raises(ValueError):
            BankConfig.model_validate(bad)
    # no rules: a bank only looked up (as HMA's banks are), that decides no rule
    assert BankConfig(name="LOOKUP_ONLY", kind="deny").rules == []


def test_folder_appends_reads_since_a_mark_and_removes(tmp_path: Path) -> None:
    folder = BankFolder(tmp_path / "banks")
    bank = folder.create(BankConfig(name="KNOWN_BAD", kind="deny", rules=["nudity"]))
    with pytest.raises(BankExists):
        folder.create(BankConfig(name="KNOWN_BAD", kind="deny", rules=["nudity"]))
    with pytest.raises(BankNotFound):
        folder.get("OTHER")
    bank.add([BankEntry(content_id="c1", hash=PDQ_A.upper(), labels=["x"], added_by="ana")])
    entries, mark, whole = bank.read()
    assert whole and [(e.content_id, e.hash, e.added_by) for e in entries] == [("c1", PDQ_A, "ana")]
    bank.add([BankEntry(content_id="c2", hash=PDQ_B)])
    more, mark2, whole = folder.get("KNOWN_BAD").read(mark)
    assert not whole and [e.content_id for e in more] == ["c2"]  # only what came after the mark
    assert folder.get("KNOWN_BAD").remove("c1") == 1
    after, _, whole = bank.read(mark2)
    assert whole and [e.content_id for e in after] == ["c2"]  # a removal: read everything again
    assert folder.names() == ["KNOWN_BAD"]
    with pytest.raises(BankError, match="not a pdq hash"):
        bank.add([BankEntry(content_id="c3", hash="abc")])


def test_hash_lists_in_the_forms_they_are_exchanged() -> None:
    text = (f"hash,content_id,labels\n# from a partner\n{PDQ_A}\n\n{PDQ_B},case-7,nudity reported\n"
            f"pdq {PDQ_A.upper()},case-8\n")
    entries = parse_list(text, SignalType.pdq, source="list.csv", added_by="ana")
    assert [(e.hash, e.content_id, e.labels) for e in entries] == [
        (PDQ_A, PDQ_A, []), (PDQ_B, "case-7", ["nudity", "reported"]), (PDQ_A, "case-8", [])]
    again = parse_list("\n".join(list_lines(entries)), SignalType.pdq)
    assert [(e.hash, e.content_id, e.labels) for e in again] == [(e.hash, e.content_id, e.labels) for e in entries]


@pytest.mark.parametrize(("line", "why"), [
    ("0123", "not a pdq hash"),
    (f"{PDQ_A},id,labels,extra", "4 fields"),
    (f"md5 {PDQ_A[:32]}", "a md5 hash in a pdq bank"),
    (f"{PDQ_A} {PDQ_B}", "is not one pdq hash"),
])
def test_a_malformed_line_is_refused_naming_the_line(line: str, why: str) -> None:
    with pytest.raises(BankError, match=f"list.csv line 3: .*{why}"):
        parse_list(f"{PDQ_A}\n{PDQ_B},ok\n{line}\n", SignalType.pdq, source="list.csv")


def test_bank_commands(tmp_path: Path) -> None:
    banks = str(tmp_path / "banks")
    sample_image("coffee").save(tmp_path / "coffee.jpg", quality=90)
    sample_image("chelsea").save(tmp_path / "cat.png")

    def icm(*args: str) -> str:
        result = runner.invoke(app, [*args, "--banks", banks])
        assert result.exit_code == 0, result.output
        return result.stdout

    created = json.loads(icm("bank", "create", "KNOWN_BAD", "--kind", "deny", "--rule", "nudity",
                             "--dsa-category", "STATEMENT_CATEGORY_PORNOGRAPHY_OR_SEXUALIZED_CONTENT"))
    assert created["distance"] == 31 and created["created_by"]
    added = [json.loads(line) for line in icm("bank", "add", "KNOWN_BAD", str(tmp_path / "coffee.jpg"),
                                              str(tmp_path / "cat.png"), "--label", "reviewed", "--by", "ana")
             .splitlines()]
    assert [a["source"] for a in added] == [str(tmp_path / "coffee.jpg"), str(tmp_path / "cat.png")]
    hashed = json.loads(runner.invoke(app, ["hash", str(tmp_path / "coffee.jpg")]).stdout)
    assert added[0]["hash"] == hashed["pdq"][0] and added[0]["content_id"] == hashed["sha256"]
    exported = icm("bank", "export", "KNOWN_BAD")
    assert exported.splitlines()[0] == f"{hashed['pdq'][0]},{hashed['sha256']},reviewed"

    (tmp_path / "list.csv").write_text(exported)
    icm("bank", "create", "COPY", "--kind", "allow", "--rule", "nudity", "--rule", "violence", "--distance", "20")
    icm("bank", "import", "COPY", str(tmp_path / "list.csv"))
    assert icm("bank", "export", "COPY") == exported
    listed = {row["name"]: row for row in map(json.loads, icm("bank", "list", "--json").splitlines())}
    assert (listed["COPY"]["entries"], listed["COPY"]["distance"], listed["COPY"]["rules"]) == (
        2, 20, ["nudity", "violence"])
    assert "KNOWN_BAD" in icm("bank", "list")

    icm("bank", "remove", "COPY", hashed["sha256"])
    assert icm("bank", "export", "COPY").splitlines() == exported.splitlines()[1:]
    missing = runner.invoke(app, ["bank", "remove", "COPY", "nothing", "--banks", banks])
    assert missing.exit_code == 2 and "holds no content nothing" in missing.output


def test_a_bad_list_or_file_adds_nothing(tmp_path: Path) -> None:
    banks = str(tmp_path / "banks")
    runner.invoke(app, ["bank", "create", "KNOWN_BAD", "--kind", "deny", "--rule", "x", "--banks", banks])
    (tmp_path / "list.csv").write_text(f"{PDQ_A},a\n{PDQ_B},b\nnot-a-hash,c\n")
    result = runner.invoke(app, ["bank", "import", "KNOWN_BAD", str(tmp_path / "list.csv"), "--banks", banks])
    assert result.exit_code == 2
    assert "list.csv line 3: 'not-a-hash' is not a pdq hash (64 hex digits)" in result.output
    sample_image("coffee").save(tmp_path / "coffee.jpg")
    (tmp_path / "flat.png").write_bytes((tmp_path / "coffee.jpg").read_bytes()[:0])
    result = runner.invoke(app, ["bank", "add", "KNOWN_BAD", str(tmp_path / "coffee.jpg"),
                                 str(tmp_path / "flat.png"), "--banks", banks])
    assert result.exit_code == 2 and "flat.png: the file is empty" in result.output
    assert BankFolder(banks).get("KNOWN_BAD").entries() == []


def test_a_bank_file_with_a_malformed_line_is_refused_naming_the_line(tmp_path: Path) -> None:
    folder = BankFolder(tmp_path / "banks")
    bank = folder.create(BankConfig(name="KNOWN_BAD", kind="deny", rules=["nudity"]))
    bank.add([BankEntry(content_id="c1", hash=PDQ_A), BankEntry(content_id="c2", hash=PDQ_B)])
    entries = tmp_path / "banks" / "KNOWN_BAD" / "entries.jsonl"
    lines = entries.read_text().splitlines()
    entries.write_text("\n".join([lines[0], '{"content_id": "c3"}', lines[1]]) + "\n")
    with pytest.raises(BankError, match=r"entries.jsonl: entry 2 after byte 0: .*hash"):
        folder.get("KNOWN_BAD").entries()
