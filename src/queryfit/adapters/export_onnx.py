"""The adapter alone as a small ONNX graph, for runtimes outside Python.

Input ``query_vectors`` ``[batch, dim]`` float32 (the base model's query vectors); output
``adapted_query_vectors`` of the same shape, L2-normalised when queryfit normalises. The graph
keeps each family's own structure (a low-rank adapter stays two thin matrices), uses only opset 17
operators every ONNX runtime has, and is checked against queryfit's numpy with onnxruntime.

Example::

    from queryfit.adapters import load_adapter
    from queryfit.adapters.export_onnx import export_onnx
    export_onnx(load_adapter("adapter/"), "adapter-onnx/")  # adapter.onnx + adapter_export.json
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from queryfit._io import write_bytes, write_json
from queryfit.adapters.base import Adapter
from queryfit.errors import AdapterError

ONNX_FILE = "adapter.onnx"
INPUT_NAME = "query_vectors"
OUTPUT_NAME = "adapted_query_vectors"
OPSET = 17
#: ONNX IR version 8 (onnx 1.10+) is what runtimes supporting opset 17 all read.
IR_VERSION = 8
#: Tolerance of the check against numpy (the issue's bar; float32 rounding is far below it).
TOLERANCE = 1e-5


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise AdapterError(
            f"exporting to ONNX needs the onnx package ({exc}); install it with "
            "`pip install 'queryfit[onnx]'`"
        ) from None
    return onnx


def build_graph(adapter: Adapter) -> Any:
    """The adapter's function as an ``onnx.ModelProto`` (checked by ``onnx.checker``)."""
    onnx = _require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    dim = adapter.dim
    p = adapter.params
    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    x = INPUT_NAME
    if adapter.type == "identity":
        y = node("Identity", [x], "mapped")
    elif adapter.type == "linear":
        bias = p.get("bias", np.zeros(dim, np.float32))
        y = node("Gemm", [x, const("weight", p["weight"]), const("bias", bias)], "mapped", transB=1)
    elif adapter.type == "low_rank":
        down = node("MatMul", [x, const("down_t", p["down"].T)], "down")
        up = node("MatMul", [down, const("up_t", p["up"].T)], "up")
        y = node("Add", [x, up], "mapped")
    elif adapter.type == "residual_mlp":
        hidden = node(
            "Gemm",
            [x, const("in_weight", p["in_weight"]), const("in_bias", p["in_bias"])],
            "hidden_linear",
            transB=1,
        )
        relu = node("Relu", [hidden], "hidden")
        delta = node(
            "Gemm",
            [relu, const("out_weight", p["out_weight"]), const("out_bias", p["out_bias"])],
            "delta",
            transB=1,
        )
        y = node("Add", [x, delta], "mapped")
    else:  # Adapter() refuses unknown kinds; this keeps a new family from exporting silently
        raise AdapterError(f"no ONNX export for {adapter.type} adapters yet")
    if adapter.normalize:
        norm = node("ReduceL2", [y], "norm", axes=[1], keepdims=1)
        safe = node("Max", [norm, const("eps", np.array([1e-12], np.float32))], "safe_norm")
        node("Div", [y, safe], OUTPUT_NAME)
    else:
        node("Identity", [y], OUTPUT_NAME)

    batch_dim = ["batch", dim]
    graph = helper.make_graph(
        nodes,
        f"queryfit_{adapter.type}_adapter",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, batch_dim)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, batch_dim)],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        producer_name="queryfit",
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string=(
            f"queryfit {adapter.type} query adapter for "
            f"{adapter.base_model.id or 'an unrecorded base model'}: apply to query "
            "vectors only; document vectors stay as the base model made them"
        ),
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def check_onnx(path: str | Path, adapter: Adapter, *, n: int = 64, seed: int = 0) -> float:
    """Largest difference between onnxruntime and ``adapter.transform`` on random vectors.

    Raises :class:`AdapterError` beyond :data:`TOLERANCE`; needs onnxruntime.
    """
    import onnxruntime

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, adapter.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # base vectors are usually unit length
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    diff = float(np.abs(got - adapter.transform(x)).max())
    if not diff <= TOLERANCE:
        raise AdapterError(
            f"the ONNX graph in {path} differs from queryfit's adapter by {diff:.2e} (> "
            f"{TOLERANCE:g}); please report this as a queryfit bug"
        )
    return diff


def export_onnx(adapter: Adapter, out: str | Path, *, check: bool = True) -> list[Path]:
    """Write ``adapter.onnx`` and ``adapter_export.json`` to the folder ``out``; returns them.

    With ``check`` (and onnxruntime installed) the graph is run once and compared with numpy.
    """
    model = build_graph(adapter)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AdapterError(f"cannot export to {out}: it is a file; choose a folder path")
    path = write_bytes(out / ONNX_FILE, model.SerializeToString())
    info: dict[str, Any] = {
        "format": "onnx",
        "file": ONNX_FILE,
        "opset": OPSET,
        "input": {"name": INPUT_NAME, "shape": ["batch", adapter.dim], "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", adapter.dim], "dtype": "float32"},
        "source_type": adapter.type,
        "normalize": adapter.normalize,
        "apply_to": "query vectors only; document vectors stay as the base model made them",
        "similarity": adapter.similarity,
        "base_model": asdict(adapter.base_model),
    }
    if check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            warnings.warn(
                "onnxruntime is not installed, so the ONNX graph was not checked against "
                "queryfit; `pip install 'queryfit[onnx]'` to check it",
                stacklevel=2,
            )
        else:
            info["max_abs_difference_from_queryfit"] = check_onnx(path, adapter)
    info_path = write_json(out / "adapter_export.json", info)
    return [path, info_path]
