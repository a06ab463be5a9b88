"""A Flask app."""

import importlib.metadata
import os

import flask

app = flask.Flask(__name__)


@app.get("/")
def index() -> dict[str, object]:
    return {
        "app": "flask",
        "flask": importlib.metadata.version("flask"),
        "index": os.environ.get("CF_INSTANCE_INDEX"),
    }
