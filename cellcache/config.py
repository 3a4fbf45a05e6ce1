"""Where settings come from: defaults < pyproject.toml < environment < flags."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from cellcache.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_DIR = ".cellcache"


@dataclass(frozen=True)
class Config:
    dir: Path
    remote: str | None = None
    key: bytes | None = None
    disable: bool = False

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def find_pyproject(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _from_pyproject(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    section = data.get("tool", {}).get("cellcache", {})
    unknown = set(section) - {"dir", "remote", "disable"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown [tool.cellcache] setting(s) {sorted(unknown)}; "
            "valid settings are dir, remote, disable (the signing key belongs in CELLCACHE_KEY, not in a file)"
        )
    settings: dict[str, Any] = {}
    if "dir" in section:
        # A relative dir is relative to the pyproject, so every notebook of the project shares one store.
        settings["dir"] = (path.parent / str(section["dir"])).resolve()
    if "remote" in section:
        settings["remote"] = str(section["remote"]) or None
    if "disable" in section:
        settings["disable"] = bool(section["disable"])
    return settings


def resolve(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    cwd = Path.cwd() if cwd is None else cwd
    env = os.environ if env is None else env
    settings: dict[str, Any] = {"dir": (cwd / DEFAULT_DIR).resolve()}
    pyproject = find_pyproject(cwd)
    if pyproject is not None:
        settings.update(_from_pyproject(pyproject))
    if env.get("CELLCACHE_DIR"):
        settings["dir"] = (cwd / os.path.expanduser(env["CELLCACHE_DIR"])).resolve()
    if env.get("CELLCACHE_REMOTE"):
        settings["remote"] = env["CELLCACHE_REMOTE"]
    if env.get("CELLCACHE_KEY"):
        settings["key"] = env["CELLCACHE_KEY"].encode()
    if "CELLCACHE_DISABLE" in env:
        settings["disable"] = _truthy(env["CELLCACHE_DISABLE"])
    return Config(**settings)
