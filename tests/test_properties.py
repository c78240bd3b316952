"""Property-based tests (hypothesis) of everything that reads a user's files.

* dataset loaders: save -> load gives the same dataset back, in every format, for any valid text;
  any bytes and any JSON raise nothing but DatasetError;
* adapter loader: any damage to adapter.json or the weights raises AdapterError, and an adapter
  that loads never turns a finite query into NaN;
* embedding store: any texts round-trip exactly; any byte damage to the file gives a StoreError
  or the right vectors, and after ``repair_store`` always the right vectors.

Example counts are kept small so the file runs in seconds; raise them with
``--hypothesis-seed``/``HYPOTHESIS_PROFILE`` locally when hunting.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from queryfit.adapters import Adapter, load_adapter, save_adapter
from queryfit.data import QADataset, load_dataset, save_dataset
from queryfit.embedders import CallableEmbedder
from queryfit.errors import AdapterError, DatasetError, StoreError
from queryfit.store import EmbeddingStore
from queryfit.store_repair import repair_store

# ``scratch`` is function-scoped on purpose: each example asks it for a fresh folder.
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
FAST = settings(max_examples=30, deadline=None, suppress_health_check=HEALTH)


@pytest.fixture
def scratch():
    """A fresh folder per call: hypothesis runs many examples inside one test."""
    folders: list[Path] = []

    def make() -> Path:
        folders.append(Path(tempfile.mkdtemp(prefix="queryfit-prop-")))
        return folders[-1]

    yield make
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


# -- datasets ------------------------------------------------------------------------------------

# Any Unicode but lone surrogates (not valid Unicode; refused at load, see test_dataset.py).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda t: t.strip() != ""
)
# BEIR ids live in a TSV column: no tabs or line breaks, no whitespace at the ends.
BEIR_ID = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\t\n\r"), min_size=1, max_size=12
).filter(lambda t: t == t.strip() and t != "")


@st.composite
def datasets(draw, ids=TEXT) -> QADataset:
    doc_ids = draw(st.lists(ids, min_size=1, max_size=6, unique=True))
    corpus = {d: draw(TEXT) for d in doc_ids}
    query_ids = draw(st.lists(ids, min_size=1, max_size=5, unique=True))
    queries = {q: draw(TEXT) for q in query_ids}
    relevant = {
        q: draw(st.lists(st.sampled_from(doc_ids), min_size=1, max_size=3, unique=True))
        for q in query_ids
    }
    return QADataset(queries=queries, corpus=corpus, relevant_docs=relevant)


@FAST
@given(data=datasets(), name=st.sampled_from(["d.json", "d.jsonl", "d.jsonl.gz"]))
def test_json_formats_round_trip_any_valid_text(scratch, data: QADataset, name: str) -> None:
    path = scratch() / name
    save_dataset(data, path)
    assert load_dataset(path) == data


@FAST
@given(data=datasets(ids=BEIR_ID))
def test_beir_round_trips_any_valid_text(scratch, data: QADataset) -> None:
    path = scratch() / "beir"
    save_dataset(data, path)
    assert load_dataset(path) == data


@FAST
@given(data=datasets(), bad_id=st.sampled_from(["a\tb", " lead", "trail ", "x\ny"]))
def test_beir_refuses_ids_its_tsv_cannot_hold(scratch, data: QADataset, bad_id: str) -> None:
    qid = next(iter(data.queries))
    data.queries[bad_id] = data.queries.pop(qid)
    data.relevant_docs[bad_id] = data.relevant_docs.pop(qid)
    folder = scratch() / "beir"
    with pytest.raises(DatasetError, match="qrels TSV cannot hold"):
        save_dataset(data, folder)
    assert not folder.exists()  # nothing half-written


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
KEYS = st.sampled_from(
    ["queries", "corpus", "relevant_docs", "mode", "query", "passage", "passages"]
    + ["passage_ids", "query_id", "passage_id", "_id", "text"]
)
SHAPED = st.dictionaries(KEYS, JSON | st.dictionaries(st.text(max_size=4), JSON), max_size=5)


def _loads_or_dataset_error(path: Path) -> None:
    try:
        result = load_dataset(path)
    except DatasetError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(result, QADataset)
        result.validate()
        result.fingerprint()


@FAST
@given(
    raw=st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()),
    name=st.sampled_from(["d.json", "d.jsonl", "d.jsonl.gz"]),
)
def test_any_bytes_raise_only_dataset_error(scratch, raw: bytes, name: str) -> None:
    path = scratch() / name
    path.write_bytes(raw)
    _loads_or_dataset_error(path)


@FAST
@given(rows=st.lists(SHAPED, max_size=4), name=st.sampled_from(["d.json", "d.jsonl"]))
def test_any_json_shape_raises_only_dataset_error(scratch, rows: list, name: str) -> None:
    path = scratch() / name
    if name.endswith(".jsonl"):
        path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    else:
        path.write_text(json.dumps(rows[0] if rows else {}), encoding="utf-8")
    _loads_or_dataset_error(path)


@FAST
@given(
    part=st.sampled_from(["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"]),
    raw=st.binary(max_size=200)
    | st.lists(SHAPED, max_size=3).map(lambda rows: "\n".join(map(json.dumps, rows)).encode())
    | st.text(max_size=60).map(str.encode),
)
def test_any_beir_part_raises_only_dataset_error(scratch, part: str, raw: bytes) -> None:
    folder = scratch() / "beir"
    save_dataset(QADataset({"q": "question?"}, {"d": "passage."}, {"q": ["d"]}), folder)
    (folder / part).write_bytes(raw)
    _loads_or_dataset_error(folder)


# -- adapters ------------------------------------------------------------------------------------

DIM = 6
FIELDS = ["type", "dim", "base_model", "similarity", "normalize", "format_version"]


def _saved(folder: Path, kind: str) -> Path:
    rng = np.random.default_rng(0)
    shapes = {
        "linear": {"weight": (DIM, DIM), "bias": (DIM,)},
        "low_rank": {"down": (2, DIM), "up": (DIM, 2)},
        "residual_mlp": {
            "in_weight": (3, DIM),
            "in_bias": (3,),
            "out_weight": (DIM, 3),
            "out_bias": (DIM,),
        },
        "identity": {},
    }[kind]
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    return save_adapter(Adapter(type=kind, params=params, dim=DIM), folder / "a")


def _load_and_use(folder: Path) -> None:
    """Loading raises only AdapterError; a loaded adapter maps finite queries to finite ones."""
    try:
        adapter = load_adapter(folder)
    except AdapterError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    queries = np.random.default_rng(1).normal(size=(4, adapter.dim)).astype(np.float32)
    try:
        out = adapter.transform(queries)
    except AdapterError:
        return  # e.g. weights so large that the product overflows: refused, not NaN
    assert out.shape == queries.shape and np.isfinite(out).all()


ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.uint8, np.bool_]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7),
)


@FAST
@given(
    kind=st.sampled_from(["identity", "linear", "low_rank", "residual_mlp"]),
    field=st.sampled_from(FIELDS),
    value=JSON,
)
def test_any_config_field_damage_raises_only_adapter_error(scratch, kind, field, value) -> None:
    folder = _saved(scratch(), kind)
    meta = json.loads((folder / "adapter.json").read_text())
    meta[field] = value
    (folder / "adapter.json").write_text(json.dumps(meta))
    _load_and_use(folder)


@FAST
@given(
    kind=st.sampled_from(["linear", "low_rank", "residual_mlp"]),
    config=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()),
)
def test_any_config_bytes_raise_only_adapter_error(scratch, kind: str, config: bytes) -> None:
    folder = _saved(scratch(), kind)
    (folder / "adapter.json").write_bytes(config)
    _load_and_use(folder)


@FAST
@given(
    kind=st.sampled_from(["identity", "linear", "low_rank", "residual_mlp"]),
    arrays=st.dictionaries(
        st.sampled_from(
            ["weight", "bias", "down", "up", "in_weight", "in_bias", "out_weight", "out_bias"]
            + ["other"]
        ),
        ARRAYS,
        max_size=4,
    ),
)
def test_any_weights_raise_only_adapter_error_never_nan(scratch, kind: str, arrays) -> None:
    from safetensors.numpy import save_file

    folder = _saved(scratch(), kind)
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    try:
        save_file(arrays, str(folder / "adapter.safetensors"))
    except Exception:  # noqa: BLE001 - safetensors refuses some arrays (e.g. bool, 0-d)
        assume(False)
    _load_and_use(folder)


@FAST
@given(
    kind=st.sampled_from(["linear", "low_rank", "residual_mlp"]),
    edits=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=8)),
        min_size=1,
        max_size=4,
    ),
)
def test_any_byte_damage_to_weights_raises_only_adapter_error(scratch, kind, edits) -> None:
    folder = _saved(scratch(), kind)
    raw = bytearray((folder / "adapter.safetensors").read_bytes())
    for where, data in edits:
        at = int(where * len(raw))
        raw[at : at + len(data)] = data
    (folder / "adapter.safetensors").write_bytes(bytes(raw))
    _load_and_use(folder)


# -- the embedding store -------------------------------------------------------------------------

SDIM = 8


def fake_vector(text: str) -> np.ndarray:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    seed = int.from_bytes(digest[:8], "little")
    return np.random.default_rng(seed).standard_normal(SDIM).astype(np.float32)


class Model:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([fake_vector(t) for t in texts])


def _embedder(model: Model) -> CallableEmbedder:
    return CallableEmbedder(model, "test:fake", dim=SDIM, max_batch_size=64)


@FAST
@given(texts=st.lists(st.text(max_size=30), min_size=1, max_size=30))
def test_any_texts_round_trip_exactly(scratch, texts: list[str]) -> None:
    path = scratch() / "s.sqlite"
    expected = np.stack([fake_vector(t) for t in texts])
    with EmbeddingStore(path) as store:
        np.testing.assert_array_equal(
            store.embed(_embedder(Model()), texts, "query", progress=False), expected
        )
    model = Model()
    with EmbeddingStore(path) as store:
        again = store.embed(_embedder(model), texts, "query", progress=False)
    np.testing.assert_array_equal(again, expected)
    assert model.calls == 0  # every text served from the file


STORE_TEXTS = [f"passage {i}: {'ü' * (i % 5)}" for i in range(400)]
STORE_EXPECTED = np.stack([fake_vector(t) for t in STORE_TEXTS])


@pytest.fixture(scope="module")
def sound_store(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("store") / "s.sqlite"
    with EmbeddingStore(path) as store:
        store.embed(_embedder(Model()), STORE_TEXTS, "document", progress=False)
    return path.read_bytes()


def _embed_all(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "damaged entries will be embedded again"
        with EmbeddingStore(path) as store:
            return store.embed(_embedder(Model()), STORE_TEXTS, "document", progress=False)


@settings(max_examples=40, deadline=None, suppress_health_check=HEALTH)
@given(
    edits=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=64)),
        min_size=1,
        max_size=4,
    )
)
# Found by this test: the file's last byte is a key-index entry's row id; damaged, SQLite answered
# one text's hash from the index with another row's vector (caught now: the checksum covers
# the key).
@example(edits=[(0.9999999999999999, b"\x01")])
def test_any_byte_damage_gives_store_error_or_right_vectors(scratch, sound_store, edits) -> None:
    raw = bytearray(sound_store)
    for where, data in edits:
        at = int(where * len(raw))
        raw[at : at + len(data)] = data
    path = scratch() / "s.sqlite"
    path.write_bytes(bytes(raw))
    try:
        vectors = _embed_all(path)
    except StoreError as exc:
        assert str(exc) and "\n" not in str(exc)
        try:
            repair_store(path)
        except StoreError:
            return  # refused with a message (e.g. it no longer looks like a store)
        vectors = _embed_all(path)  # after a repair: the right answer, whatever was lost
    np.testing.assert_array_equal(vectors, STORE_EXPECTED)
