"""A damaged or read-only store: named at open, checked, repaired, read without writing.

Damage is made the way a bad disk or a cut copy makes it: bytes overwritten inside the file's
pages, header intact. Read-only stores are opened by a real second process without the right to
write (as root, with CAP_DAC_OVERRIDE dropped through ``setpriv``, since root ignores file modes).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import queryfit.store as store_module
from queryfit.embedders import CallableEmbedder
from queryfit.errors import StoreError
from queryfit.store import EmbeddingStore, text_hash
from queryfit.store_repair import check_store, repair_store

DIM = 8
TEXTS = [f"text number {i}" for i in range(2000)]
SRC = Path(__file__).resolve().parent.parent / "src"


def fake_vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


class Model:
    """A model function that counts the texts it is asked to embed."""

    def __init__(self) -> None:
        self.texts = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return np.stack([fake_vector(t) for t in texts])


def embedder(model: Model) -> CallableEmbedder:
    return CallableEmbedder(model, "test:fake", dim=DIM)


EXPECTED = np.stack([fake_vector(t) for t in TEXTS])


def filled_store(path: Path) -> Path:
    with EmbeddingStore(path) as store:
        store.embed(embedder(Model()), TEXTS, "document", progress=False)
    return path


def page_of(path: Path, needle: bytes) -> int:
    """0-based number of the page holding ``needle`` (a stored text hash)."""
    raw = path.read_bytes()
    page_size = int.from_bytes(raw[16:18], "big")
    return raw.index(needle) // page_size


def damage_page(path: Path, page: int) -> None:
    """Overwrite the b-tree header of one page, as a bad sector would; the file header stays."""
    raw = bytearray(path.read_bytes())
    page_size = int.from_bytes(raw[16:18], "big")
    assert page > 0  # page 0 holds the file header
    raw[page * page_size : page * page_size + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """A store whose table page holding ``text number 1000`` is damaged."""
    path = filled_store(tmp_path / "embeddings.sqlite")
    damage_page(path, page_of(path, text_hash(TEXTS[1000])))
    return path


def test_damage_is_named_at_open_with_the_fix_on_every_run(damaged: Path) -> None:
    for _ in range(2):  # reruns included
        with pytest.raises(StoreError) as err:
            EmbeddingStore(damaged)
        message = str(err.value)
        assert f"embedding store {damaged} is damaged" in message
        assert f"queryfit store repair --store {damaged}" in message and "\n" not in message


def test_damage_met_while_reading_is_a_store_error(damaged: Path, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "QUICK_CHECK_MAX_BYTES", 0)  # as for a big store
    with EmbeddingStore(damaged) as store:  # opens: no check at open
        with pytest.raises(StoreError, match="is damaged .*queryfit store repair"):
            store.embed(embedder(Model()), TEXTS, "document", progress=False)


def test_check_tells_sound_from_damaged(tmp_path: Path, damaged: Path) -> None:
    sound = check_store(filled_store(tmp_path / "sound.sqlite"))
    assert sound.ok and sound.entries == len(TEXTS) and sound.bad_entries == 0
    result = check_store(damaged)
    assert not result.ok and result.problems
    before = damaged.read_bytes()
    check_store(damaged)
    assert damaged.read_bytes() == before  # reads only


def test_repair_keeps_what_is_readable_and_moves_the_damaged_file_aside(damaged: Path) -> None:
    before = damaged.read_bytes()
    result = repair_store(damaged)
    assert result.repaired and result.moved_to is not None
    aside = Path(result.moved_to)
    assert aside.name.startswith("embeddings.sqlite.damaged-") and aside.read_bytes() == before
    kept = result.kept["embeddings"]
    lost = len(TEXTS) - kept
    assert 0 < lost < 100  # one page's rows, not the store
    assert result.unreadable_rows + result.dropped_entries >= lost
    assert check_store(damaged).ok
    model = Model()
    with EmbeddingStore(damaged) as store:
        vectors = store.embed(embedder(model), TEXTS, "document", progress=False)
    np.testing.assert_array_equal(vectors, EXPECTED)
    assert model.texts == lost  # only the lost entries are embedded again
    again = repair_store(damaged)
    assert not again.repaired and again.moved_to is None  # sound now: nothing changes


def test_repair_never_overwrites_an_earlier_damaged_copy(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    moved = set()
    for _ in range(2):
        filled_store(path)
        damage_page(path, page_of(path, text_hash(TEXTS[7])))
        moved.add(repair_store(path).moved_to)
        path.unlink()
    assert len(moved) == 2 and all(Path(m).exists() for m in moved)


def test_a_file_with_a_damaged_header_is_replaced_by_an_empty_store(tmp_path: Path) -> None:
    path = filled_store(tmp_path / "s.sqlite")
    raw = bytearray(path.read_bytes())
    raw[:16] = b"not sqlite at al"
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="not a usable SQLite database.*store repair"):
        EmbeddingStore(path)
    result = repair_store(path)
    assert result.repaired and result.kept == {}
    with EmbeddingStore(path) as store:
        assert store.count() == 0


def test_repair_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    foreign = tmp_path / "other.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StoreError, match="not a queryfit embedding store"):
        repair_store(foreign)
    with pytest.raises(StoreError, match="no embedding store at"):
        check_store(tmp_path / "missing.sqlite")


def test_cli_check_and_repair(damaged: Path) -> None:
    from typer.testing import CliRunner

    from queryfit.cli import app

    runner = CliRunner()
    checked = runner.invoke(app, ["store", "check", "--store", str(damaged)])
    assert checked.exit_code == 1 and "is damaged" in checked.stdout
    assert f"queryfit store repair --store {damaged}" in checked.stdout
    repaired = runner.invoke(app, ["store", "repair", "--store", str(damaged), "--json"])
    assert repaired.exit_code == 0, repaired.output
    report = json.loads(repaired.stdout)
    assert report["repaired"] and 0 < report["kept"]["embeddings"] < len(TEXTS)
    checked = runner.invoke(app, ["store", "check", "--store", str(damaged), "--json"])
    assert checked.exit_code == 0 and json.loads(checked.stdout)["ok"]
    missing = runner.invoke(app, ["store", "check", "--store", str(damaged.parent / "nope")])
    assert missing.exit_code == 2 and "no embedding store at" in missing.stderr


# -- read-only stores: a second process without the right to write ------------------------------


def _unprivileged() -> list[str]:
    """Command prefix under which file modes bind (root ignores them unless it drops caps)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a folder read-only to us")
    caps = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


@pytest.fixture
def read_only_dir():
    """A folder (outside pytest's private tmp) the test fills, then makes read-only."""
    folder = Path(tempfile.mkdtemp(prefix="queryfit-ro-"))
    os.chmod(folder, 0o755)
    yield folder
    os.chmod(folder, 0o755)
    shutil.rmtree(folder, ignore_errors=True)


READER = textwrap.dedent(
    """
    import hashlib, json, sys, warnings
    import numpy as np
    from queryfit.embedders import CallableEmbedder
    from queryfit.errors import StoreError
    from queryfit.store import EmbeddingStore

    def vec(t):
        seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(8).astype(np.float32)

    calls = []
    emb = CallableEmbedder(lambda ts: calls.append(ts) or np.stack([vec(t) for t in ts]),
                           "test:fake", dim=8)
    texts = json.loads(sys.argv[2])
    out = {}
    try:
        with EmbeddingStore(sys.argv[1]) as store:
            got = store.embed(emb, texts, "document", progress=False)
            out["read_only"] = store.read_only
            out["exact"] = bool(np.array_equal(got, np.stack([vec(t) for t in texts])))
    except StoreError as exc:
        out["error"] = str(exc)
    out["model_calls"] = len(calls)
    print(json.dumps(out))
    """
)


def read_as_other_user(store: Path, texts: list[str]) -> dict:
    result = subprocess.run(
        [*_unprivileged(), sys.executable, "-c", READER, str(store), json.dumps(texts)],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(SRC)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("what", ["folder", "file", "folder and file"])
def test_a_complete_store_in_a_read_only_place_is_read(read_only_dir: Path, what: str) -> None:
    path = filled_store(read_only_dir / "embeddings.sqlite")
    if "file" in what:
        os.chmod(path, 0o444)
    if "folder" in what:
        os.chmod(read_only_dir, 0o555)
    texts = TEXTS[:50]
    got = read_as_other_user(path, texts)
    assert got == {"read_only": True, "exact": True, "model_calls": 0}
    new = read_as_other_user(path, [*texts, "a text the store has not seen"])
    assert "error" in new and new["model_calls"] == 0  # refused before paying for a call
    assert f"cannot write to embedding store {path}: it is read-only" in new["error"]
    assert "1 of these document texts are not in it yet" in new["error"]
    assert "--store" in new["error"]


def test_a_read_only_folder_without_a_store_says_read_only(read_only_dir: Path) -> None:
    os.chmod(read_only_dir, 0o555)
    got = read_as_other_user(read_only_dir / "embeddings.sqlite", ["x"])
    assert "read-only" in got["error"] and "not a usable SQLite database" not in got["error"]
    nested = read_as_other_user(read_only_dir / "sub" / "embeddings.sqlite", ["x"])
    assert "read-only" in nested["error"]


def test_cli_check_reads_a_read_only_store(read_only_dir: Path) -> None:
    path = filled_store(read_only_dir / "embeddings.sqlite")
    os.chmod(read_only_dir, 0o555)
    result = subprocess.run(
        [*_unprivileged(), sys.executable, "-m", "queryfit", "store", "check", "--json"],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(SRC), "QUERYFIT_STORE": str(path)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["entries"] == len(TEXTS)
    assert sorted(p.name for p in read_only_dir.iterdir()) == ["embeddings.sqlite"]


def test_warnings_stay_quiet_for_a_sound_store(tmp_path: Path) -> None:
    path = filled_store(tmp_path / "s.sqlite")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with EmbeddingStore(path) as store:
            vectors = store.embed(embedder(Model()), TEXTS, "document", progress=False)
    np.testing.assert_array_equal(vectors, EXPECTED)
