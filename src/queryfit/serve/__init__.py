"""An OpenAI-compatible embeddings server for an adapted model (``queryfit serve``).

Any client of OpenAI's embeddings API, in any language, gets adapted query vectors from the model
id ``<name>`` and the base model's document vectors from ``<name>-document``; concurrent requests
share model calls (micro-batching). Needs ``pip install 'queryfit[serve]'``.

Example::

    from queryfit.serve import BackgroundServer, ServeConfig, create_app, load_model
    model = load_model("adapter/")                      # base model read from adapter.json
    app = create_app(model, ServeConfig(name="adapter"))
    with BackgroundServer(app) as server:               # or: uvicorn, any ASGI server
        print(server.url + "/v1")
"""

from queryfit.serve.app import create_app
from queryfit.serve.batcher import MicroBatcher
from queryfit.serve.config import ServeConfig
from queryfit.serve.model import load_model
from queryfit.serve.runner import BackgroundServer, serve

__all__ = ["BackgroundServer", "MicroBatcher", "ServeConfig", "create_app", "load_model", "serve"]
