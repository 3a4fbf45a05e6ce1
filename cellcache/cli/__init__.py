"""The ``cellcache`` command: click glue over the plain API (``main`` is the entry point)."""
