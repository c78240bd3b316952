"""Verbs on adapter folders: export and import."""

from __future__ import annotations

from pathlib import Path

import typer

from queryfit.cli.app import app, emit_json, out, user_errors
from queryfit.cli.options import AdapterOpt, JsonOpt


@app.command()
@user_errors
def export(
    adapter: Path = AdapterOpt,
    export_out: Path = typer.Option(..., "--out", "-o", help="Folder to write."),
    fmt: str = typer.Option(
        "npy",
        "--format",
        "-f",
        help="npy (weight.npy + bias.npy), safetensors, llamaindex, sentence-transformers (the "
        "whole adapted model) or onnx (the adapter alone).",
    ),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="sentence-transformers only: the local base model [default: the adapter's own].",
        show_default=False,
    ),
    force: bool = typer.Option(False, "--force", help="Skip the adapter's base-model check."),
    as_json: bool = JsonOpt,
) -> None:
    """Export an adapter as a plain matrix pair for any language, or as a LlamaIndex adapter.

    Apply it to query vectors only: `q' = W q + b` (then L2-normalise), as `adapter_export.json`
    in the folder says. `--format llamaindex` writes `config.json` + `pytorch_model.bin` for
    LlamaIndex's `AdapterEmbeddingModel`. `--format onnx` writes `adapter.onnx` (base query
    vectors in, adapted out). `--format sentence-transformers` writes a model folder whose
    `encode_query` is adapted and `encode_document` is the base model's; it loads with
    `SentenceTransformer(OUT)`, without queryfit.

    Example: `queryfit export --adapter adapter/ --out model/ --format sentence-transformers`
    """
    from queryfit.adapters import load_adapter
    from queryfit.adapters.convert import export_adapter

    files = export_adapter(load_adapter(adapter), export_out, format=fmt, model=model, force=force)
    if as_json:
        return emit_json({"format": fmt, "files": [str(f) for f in files]})
    out.print(f"wrote {', '.join(f.name for f in files)} to {export_out}/", highlight=False)


@app.command("import-llamaindex")
@user_errors
def import_llamaindex(
    source: Path = typer.Argument(..., help="LlamaIndex adapter folder (config.json + .bin)."),
    adapter_out: Path = typer.Option(..., "--out", "-o", help="queryfit adapter folder to write."),
    model: str = typer.Option(
        None, "--model", "-m", help="Base model it was trained for, e.g. openai:<model>."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Convert an adapter trained with LlamaIndex into a queryfit adapter folder.

    Reads `pytorch_model.bin` as plain tensors (`weights_only=True`, never pickled code); supports
    LinearLayer and TwoLayerNN (relu). Name the base model with `--model` so the adapter refuses
    any other.

    Example: `queryfit import-llamaindex li/ --out adapter/ --model openai:text-embedding-3-small`
    """
    from queryfit.adapters.convert import import_llamaindex_adapter

    result = import_llamaindex_adapter(source, adapter_out, base_model=model)
    if as_json:
        return emit_json({"out": str(adapter_out), **dict(result.describe())})
    out.print(
        f"converted {source} ({result.type}, {result.dim} dims, {result.num_parameters:,} "
        f"parameters) to {adapter_out}/"
        + ("" if model else "; no --model given, so it is not tied to a base model"),
        highlight=False,
        soft_wrap=True,
    )
