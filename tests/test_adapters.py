"""Adapter folders: numpy application, safetensors + JSON round-trip, refusals, no pickle."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from queryfit.adapters import FAMILIES, Adapter, load_adapter, save_adapter
from queryfit.adapters.record import FORMAT_VERSION, BaseModel, DataFacts, TrainingFacts
from queryfit.errors import AdapterError

DIM = 8
MODEL = {"id": "sentence-transformers:all-MiniLM-L6-v2", "query_prefix": "", "document_prefix": ""}


def make(kind: str, seed: int = 0) -> Adapter:
    rng = np.random.default_rng(seed)
    shapes = {
        "identity": {},
        "linear": {"weight": (DIM, DIM), "bias": (DIM,)},
        "residual_mlp": {
            "in_weight": (5, DIM),
            "in_bias": (5,),
            "out_weight": (DIM, 5),
            "out_bias": (DIM,),
        },
        "low_rank": {"down": (3, DIM), "up": (DIM, 3)},
    }[kind]
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    return Adapter(type=kind, params=params, dim=DIM, base_model=dict(MODEL))


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_round_trip_gives_identical_outputs(tmp_path, kind):
    adapter = make(kind)
    adapter.training = TrainingFacts(config={"lr": 0.001}, decision="kept", best_epoch=3)
    adapter.data = DataFacts(fingerprint="abc", queries=4, passages=2)
    save_adapter(adapter, tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "adapter.json",
        "adapter.safetensors",
    ]  # no temporary files left behind
    loaded = load_adapter(tmp_path / "a", model_id=MODEL["id"], dim=DIM)
    x = np.random.default_rng(1).normal(size=(4, DIM)).astype(np.float32)
    np.testing.assert_array_equal(adapter.transform(x), loaded.transform(x))
    assert loaded.type == kind and loaded.base_model == BaseModel(**MODEL)
    assert loaded.data == adapter.data and loaded.training == adapter.training
    meta = json.loads((tmp_path / "a" / "adapter.json").read_text())
    assert meta["type"] == kind and meta["dim"] == DIM and meta["similarity"] == "cosine"


def test_linear_formula_and_normalisation():
    adapter = make("linear")
    x = np.random.default_rng(2).normal(size=(3, DIM)).astype(np.float32)
    expected = x @ adapter.params["weight"].T + adapter.params["bias"]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(adapter.transform(x), expected, rtol=1e-5)
    np.testing.assert_allclose(adapter.transform(x[0]), expected[0], rtol=1e-5)


def test_identity_only_normalises():
    x = np.arange(1, DIM + 1, dtype=np.float32)
    out = Adapter.identity(DIM).transform(x)
    np.testing.assert_allclose(out, x / np.linalg.norm(x), rtol=1e-6)


def test_refuses_other_model_and_dimension_unless_forced(tmp_path):
    save_adapter(make("linear"), tmp_path / "a")
    with pytest.raises(AdapterError, match="trained for sentence-transformers:all-MiniLM-L6-v2"):
        load_adapter(tmp_path / "a", model_id="openai:text-embedding-3-small")
    with pytest.raises(AdapterError, match="8-dimensional"):
        load_adapter(tmp_path / "a", dim=384)
    forced = load_adapter(tmp_path / "a", model_id="openai:other", dim=384, force=True)
    assert forced.dim == DIM


def test_wrong_query_dimension_is_a_clear_error():
    with pytest.raises(AdapterError, match="dimension 8"):
        make("linear").transform(np.zeros((2, 5)))


def test_missing_or_corrupt_folder_is_reported(tmp_path):
    with pytest.raises(AdapterError, match="not an adapter folder"):
        load_adapter(tmp_path)
    save_adapter(make("linear"), tmp_path / "a")
    (tmp_path / "a" / "adapter.json").write_text("{not json")
    with pytest.raises(AdapterError, match="not valid JSON"):
        load_adapter(tmp_path / "a")
    (tmp_path / "a" / "adapter.json").write_text('{"format_version": "one"}')
    with pytest.raises(AdapterError, match="integer format_version"):
        load_adapter(tmp_path / "a")
    (tmp_path / "a" / "adapter.json").write_text(
        '{"format_version": 1, "type": "linear", "dim": "x"}'
    )
    with pytest.raises(AdapterError, match="dim is .x., expected a positive integer"):
        load_adapter(tmp_path / "a")


def test_pickle_payload_is_never_executed(tmp_path):
    """A pickle disguised as the weights file must fail to load, not run."""
    save_adapter(make("linear"), tmp_path / "a")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "a" / "adapter.safetensors").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(AdapterError, match="not a readable safetensors"):
        load_adapter(tmp_path / "a")
    assert not marker.exists()


def test_applying_needs_numpy_and_safetensors_only(tmp_path):
    save_adapter(make("residual_mlp"), tmp_path / "a")
    script = textwrap.dedent(
        f"""
        import sys
        for blocked in ("torch", "sentence_transformers", "scipy"):
            sys.modules[blocked] = None  # any import of these now fails
        import numpy as np
        from queryfit.adapters import load_adapter
        a = load_adapter({str(tmp_path / "a")!r})
        print(a.transform(np.ones((2, {DIM}), dtype=np.float32)).shape)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"(2, {DIM})"


def test_unknown_type_and_missing_arrays():
    with pytest.raises(AdapterError, match="unknown adapter type"):
        Adapter(type="quadratic", params={}, dim=DIM)
    with pytest.raises(AdapterError, match="missing arrays: bias|missing arrays: weight"):
        Adapter(type="linear", params={}, dim=DIM)


def test_adapters_written_by_format_1_keep_loading():
    """tests/data/adapter_v1 was written by queryfit 0.1 (format_version 1, training facts flat
    at the top level); it loads with its facts under the typed record and applies unchanged."""
    folder = Path(__file__).parent / "data" / "adapter_v1"
    assert json.loads((folder / "adapter.json").read_text())["format_version"] == 1
    adapter = load_adapter(folder, model_id="toy:fixture", dim=16)
    assert adapter.type == "linear" and adapter.base_model == BaseModel("toy:fixture")
    facts = adapter.training
    assert facts.best_epoch == 32 and not facts.shipped_identity
    assert facts.decision.startswith("3-fold cross-validated dev ndcg@10 0.3095 -> 0.3896")
    assert facts.split.cv_folds == 3 and facts.split.description.startswith("dev: 3-fold")
    assert facts.config["adapter"] == "linear" and len(facts.history) == 38
    assert facts.dev.base == pytest.approx(0.3095, abs=1e-4)
    assert adapter.data.queries == 60 and len(adapter.data.covered_passages) == 30
    weights = safetensors.numpy.load_file(str(folder / "adapter.safetensors"))
    x = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    expected = x @ weights["weight"].T + weights["bias"]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(adapter.transform(x), expected, atol=1e-6)


def test_saving_writes_the_current_format(tmp_path):
    folder = Path(__file__).parent / "data" / "adapter_v1"
    save_adapter(load_adapter(folder), tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "adapter.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION == 2
    assert meta["training"]["best_epoch"] == 32 and "decision" not in meta
    again = load_adapter(tmp_path / "a")
    assert again.training == load_adapter(folder).training


# -- damaged or hand-edited folders: refused on load, naming the file and the array -------------


def _damage_weights(folder, change):
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(folder / "adapter.safetensors"))
    change(arrays)
    save_file(arrays, str(folder / "adapter.safetensors"))


def _damage_config(folder, change):
    meta = json.loads((folder / "adapter.json").read_text())
    change(meta)
    (folder / "adapter.json").write_text(json.dumps(meta))


def _set(array_name, value):
    def change(arrays):
        arrays[array_name] = value

    return change


WEIGHT_DAMAGE = [
    ("linear", _set("weight", np.full((DIM, DIM), np.nan, np.float32)), "'weight' holds 64 NaN"),
    ("linear", _set("bias", np.array([np.inf] * DIM, np.float32)), "'bias' holds 8 NaN or inf"),
    ("linear", _set("weight", np.ones((DIM, DIM + 1), np.float32)), "'weight' has shape (8, 9)"),
    ("linear", _set("bias", np.ones(DIM - 1, np.float32)), "'bias' has shape (7,)"),
    ("linear", _set("weight", np.ones(DIM, np.float32)), "expected 2 dimension"),
    ("linear", _set("weight", np.ones((DIM, DIM), np.int8) > 0), "dtype bool"),
    ("linear", _set("extra", np.ones(2, np.float32)), "unexpected arrays: extra"),
    ("linear", _set("weight", np.full((DIM, DIM), 1e300)), "'weight' holds 64 NaN or inf"),
    ("low_rank", _set("down", np.ones((3, DIM + 2), np.float32)), "'down' has shape (3, 10)"),
    ("low_rank", _set("up", np.ones((DIM, 4), np.float32)), "'up' has shape (8, 4)"),
    ("low_rank", _set("up", np.full((DIM, 3), -np.inf, np.float32)), "'up' holds 24 NaN"),
    ("residual_mlp", _set("in_bias", np.ones(4, np.float32)), "'in_bias' has shape (4,)"),
    ("residual_mlp", _set("out_weight", np.ones((DIM, 6), np.float32)), "'out_weight'"),
    ("residual_mlp", _set("in_weight", np.ones((5, 3), np.float32)), "'in_weight' has shape"),
    ("residual_mlp", _set("out_bias", np.ones(DIM + 1, np.float32)), "'out_bias' has shape (9,)"),
    ("residual_mlp", lambda a: a.pop("in_bias"), "missing arrays: in_bias"),
    ("identity", _set("weight", np.eye(DIM, dtype=np.float32)), "unexpected arrays: weight"),
]


@pytest.mark.parametrize(("kind", "change", "expected"), WEIGHT_DAMAGE)
def test_damaged_weights_are_refused_naming_file_and_array(tmp_path, kind, change, expected):
    folder = tmp_path / "a"
    save_adapter(make(kind), folder)
    if kind == "identity":  # safetensors cannot write an empty file through save_file's check
        from safetensors.numpy import save_file

        save_file({"weight": np.eye(DIM, dtype=np.float32)}, str(folder / "adapter.safetensors"))
    else:
        _damage_weights(folder, change)
    with pytest.raises(AdapterError) as err:
        load_adapter(folder)
    message = str(err.value)
    assert expected in message
    assert "adapter.safetensors" in message and "retrain" in message and "\n" not in message


CONFIG_DAMAGE = [
    (lambda m: m.update(dim="eight"), "dim is 'eight', expected a positive integer"),
    (lambda m: m.update(dim=8.0), "dim is 8.0"),
    (lambda m: m.update(dim=True), "dim is True"),
    (lambda m: m.update(dim=-8), "dim is -8"),
    (lambda m: m.update(dim=9), "'weight' has shape (8, 8), expected (9, 9)"),
    (lambda m: m.update(base_model="sentence-transformers:x"), "base_model is 'sentence-tr"),
    (lambda m: m.update(base_model=[1, 2]), "base_model is [1, 2], expected an object"),
    (lambda m: m["base_model"].update(query_prefix=3), "base_model.query_prefix is 3"),
    (lambda m: m.update(type=["linear"]), "type is ['linear'], expected one of"),
    (lambda m: m.update(type="cubic"), "type is 'cubic'"),
    (lambda m: m.update(normalize="false"), "normalize is 'false', expected true or false"),
    (lambda m: m.update(similarity="euclid"), "similarity is 'euclid'"),
    (lambda m: m.pop("dim"), "lacks the field 'dim'"),
    (lambda m: m.update(format_version=True), "integer format_version"),
]


@pytest.mark.parametrize(("change", "expected"), CONFIG_DAMAGE)
def test_damaged_config_is_refused_naming_the_field(tmp_path, change, expected):
    folder = tmp_path / "a"
    save_adapter(make("linear"), folder)
    _damage_config(folder, change)
    with pytest.raises(AdapterError) as err:
        load_adapter(folder)
    message = str(err.value)
    assert expected in message and "adapter." in message and "\n" not in message
    assert "retrain" in message or "upgrade" in message


def test_deeply_nested_config_is_an_adapter_error(tmp_path):
    folder = tmp_path / "a"
    save_adapter(make("linear"), folder)
    (folder / "adapter.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(AdapterError, match="not valid JSON"):
        load_adapter(folder)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"params": {"weight": np.full((DIM, DIM), np.nan)}}, "'weight' holds 64 NaN"),
        ({"params": {"weight": np.eye(DIM + 1)}}, "'weight' has shape (9, 9)"),
        ({"params": {"weight": np.eye(DIM), "bias": [1.0, 2.0]}}, "'bias' has shape (2,)"),
        ({"params": {"weight": [[1, 2], [3]]}}, "'weight' is not a numeric array"),
        ({"params": {"weight": np.eye(DIM).astype(complex)}}, "dtype complex128"),
        ({"params": {"weight": np.eye(DIM)}, "dim": "8"}, "dim is '8'"),
        ({"params": {"weight": np.eye(DIM)}, "base_model": "st:x"}, "base_model is a str"),
        ({"params": {"weight": np.eye(DIM)}, "normalize": "yes"}, "normalize is 'yes'"),
    ],
)
def test_construction_validates_too(kwargs, expected):
    args = {"type": "linear", "dim": DIM} | kwargs
    with pytest.raises(AdapterError) as err:
        Adapter(**args)
    assert expected in str(err.value) and "fit its type and dim" in str(err.value)


def test_transform_never_returns_nan_rows():
    adapter = make("linear")
    x = np.ones((3, DIM), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(AdapterError, match=r"1 row\(s\) \(1\) of the query vectors hold NaN"):
        adapter.transform(x)
    with pytest.raises(AdapterError, match="not a numeric array"):
        adapter.transform([["a"] * DIM])
    huge = Adapter(type="linear", params={"weight": np.full((DIM, DIM), 3e38)}, dim=DIM)
    with pytest.raises(AdapterError, match="overflows to NaN or inf on 1 row"):
        huge.transform(np.ones(DIM, np.float32))
    assert np.isfinite(adapter.transform(np.ones((2, DIM)))).all()
