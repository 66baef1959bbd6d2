"""HTTP API (FastAPI, OpenAPI served at /openapi.json, docs at /docs)."""

from gridledger.api.app import create_app

__all__ = ["create_app"]
