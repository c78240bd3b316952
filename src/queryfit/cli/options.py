"""Options shared by several verbs, declared once; defaults come from the settings objects."""

from __future__ import annotations

from typing import Any

import typer

from queryfit.training.config import TrainConfig

DEFAULTS = TrainConfig()  # option defaults come from the one place that defines them

DataOpt = typer.Option(..., "--data", "-d", help="LlamaIndex JSON, BEIR folder or JSONL pairs.")
ModelOpt = typer.Option(
    None, "--model", "-m", help="Embedding model, e.g. sentence-transformers:<name-or-path>."
)
StoreOpt = typer.Option(
    None, "--store", help="Embedding store file [default: .queryfit/embeddings.sqlite]."
)
JsonOpt = typer.Option(False, "--json", help="Print one JSON object on stdout, nothing else.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")
ReportOpt = typer.Option(
    None, "--report", help="Also write the HTML report (plots, query table) to this file."
)
BaseUrlOpt = typer.Option(
    None,
    "--base-url",
    help="OpenAI-compatible endpoint for openai:MODEL (Ollama, vLLM, TEI, LM Studio, Azure), "
    "e.g. http://localhost:11434/v1.",
)
DimensionsOpt = typer.Option(
    None, "--dimensions", help="Ask an API model for shorter vectors (e.g. 256); own store key."
)
DeviceOpt = typer.Option(
    DEFAULTS.device,
    "--device",
    help="auto (CUDA when torch sees a GPU), cpu or cuda: where the local sentence-transformers "
    "model runs, and training (train).",
)
ApiKeyOpt = typer.Option(
    None,
    "--api-key",
    help="API key [default: $OPENAI_API_KEY, $COHERE_API_KEY, $VOYAGE_API_KEY...]; never stored.",
    show_default=False,
)


DocsOpt = typer.Option(
    ..., "--docs", "-D", help="Folder (searched recursively) or file: .txt, .md, .html, .pdf."
)
LlmOpt = typer.Option(
    None,
    "--llm",
    help="Question writer: openai:MODEL (any OpenAI-compatible endpoint, see --base-url), "
    "ollama:MODEL, smollm2 (offline, small) or heuristic (no model) [default: smollm2 if "
    "installed, else heuristic].",
    show_default=False,
)
LlmBaseUrlOpt = typer.Option(
    None,
    "--base-url",
    help="OpenAI-compatible chat endpoint of the LLM [default: $QUERYFIT_LLM_BASE_URL, "
    "$OPENAI_BASE_URL or OpenAI], e.g. http://localhost:11434/v1 for Ollama.",
    show_default=False,
)
LlmKeyOpt = typer.Option(
    None,
    "--api-key",
    help="LLM API key [default: $QUERYFIT_LLM_API_KEY or $OPENAI_API_KEY]; never logged or saved.",
    show_default=False,
)
PromptOpt = typer.Option(
    None, "--prompt", help="Prompt template file with {passage} and {n} (--- splits off a system)."
)
PerPassageOpt = typer.Option(
    2, "--questions-per-passage", "-n", help="Questions asked per passage."
)
ConcurrencyOpt = typer.Option(8, help="LLM requests in flight at once.")
TimeoutOpt = typer.Option(60.0, help="Seconds one LLM request may take.")
RetriesOpt = typer.Option(5, help="Retries of a failed LLM request (429, 5xx, timeout, junk).")
ChunkOpt = typer.Option(
    None, help="Passage size in the embedder's tokens [default: its max sequence length]."
)
OverlapOpt = typer.Option(None, help="Tokens shared by consecutive passages [default: size/8].")
ConsistencyOpt = typer.Option(
    None,
    "--consistency-k",
    help="Keep a question only if the base model ranks its passage in the top K (off by default).",
)
MaxCopiedOpt = typer.Option(
    10, help="Drop questions copying this many consecutive words of the passage."
)


def filter_config(consistency_k: int | None, max_copied_words: int) -> Any:
    from queryfit.generation import FilterConfig

    return FilterConfig(consistency_k=consistency_k, max_copied_words=max_copied_words)
