"""The stage key: named components, and one digest over all of them.

Components are kept by name (``code``, ``input:df``, ``file:data.csv``,
``package:numpy``...) so that a miss can be explained by comparing them with
the step's previous entry.
"""
from __future__ import annotations

import ast
import platform
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import xxhash

from cellcache.cell.analysis import deep_recursion

# Bump when anything about how keys or entries are produced changes, so that
# old entries become misses instead of being misread.
FORMAT_VERSION = "1"

PYTHON_VERSION = f"{platform.python_implementation()} {'.'.join(map(str, sys.version_info[:3]))}"


@lru_cache(maxsize=512)
def code_digest(transformed_source: str) -> str:
    """Digest of the normalized AST: comments and formatting don't count."""
    with deep_recursion():  # ast.dump recurses once per nesting level
        tree = ast.parse(transformed_source)
        return xxhash.xxh3_128_hexdigest(ast.dump(tree, annotate_fields=False, include_attributes=False).encode())


def unnamed_step(code: str) -> str:
    """The name of a stage with neither a name nor a cell id, from its ``code_digest``: ``cell-`` and 8 hex digits."""
    return f"cell-{code[:8]}"


@dataclass(frozen=True)
class StageKey:
    digest: str
    components: Mapping[str, str]

    @classmethod
    def build(
        cls,
        *,
        strategy: str,
        code: str,
        inputs: Mapping[str, str],
        files: Mapping[str, str] | None = None,
        modules: Mapping[str, str] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> StageKey:
        components: dict[str, str] = {
            "format": FORMAT_VERSION,
            "strategy": strategy,
            "python": PYTHON_VERSION,
        }
        if strategy != "input_hash":
            components["code"] = code
        components.update({f"input:{name}": digest for name, digest in inputs.items()})
        components.update({f"file:{path}": digest for path, digest in (files or {}).items()})
        components.update(modules or {})
        components.update(extra or {})
        return cls.of(components)

    @classmethod
    def of(cls, components: Mapping[str, str]) -> StageKey:
        hasher = xxhash.xxh3_128()
        for name in sorted(components):
            # Length-prefixed so that no two different component maps can collide by concatenation.
            for part in (name, components[name]):
                data = part.encode()
                hasher.update(len(data).to_bytes(8, "little"))
                hasher.update(data)
        return cls(digest=hasher.hexdigest(), components=dict(components))

    def extended(self, extra: Mapping[str, str]) -> StageKey:
        """This key with more components (state found to matter only once the cell ran)."""
        return StageKey.of({**self.components, **extra})
