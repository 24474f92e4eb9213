"""The multi-council control API (FastAPI): see api.app.create_app and docs/api.md."""
