"""The Python API behind ``import ccdflow``: one module per public function or class, each a thin
face over the engine the commands use (``ccdflow/__init__.py`` re-exports them lazily)."""
