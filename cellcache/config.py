"""Where settings come from: defaults < pyproject.toml < environment < flags."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from cellcache.errors import ConfigError
from cellcache.units import parse_duration

DEFAULT_DIR = ".cellcache"
# What marks a project's root folder, as for git, pytest and ruff.
ROOT_MARKERS = ("pyproject.toml", ".git")
# Where a kernel learns its notebook's path: Jupyter Server sets the first (and `cellcache run`
# and the papermill engine set it too); VS Code puts the second into the namespace.
NOTEBOOK_ENV = "JPY_SESSION_NAME"
VSCODE_NOTEBOOK_VAR = "__vsc_ipynb_file__"


@dataclass(frozen=True)
class Config:
    dir: Path
    root: Path | None = None  # the project root the store and the notebook paths are relative to
    remote: str | None = None
    key: bytes | None = None
    disable: bool = False
    # False trusts the local disk: a restore maps blobs without hashing them, O(1) whatever their size.
    verify_local: bool = True
    marker: bool = True  # a quiet "restored from cache" line on a hit
    # A big miss is written from a forked copy-on-write snapshot (Linux), so the cell never waits for its digests.
    fork_writes: bool = True
    # The shared remote (cellcache.remote.bucket): whose entries a reader trusts, this machine's key, how strictly.
    trusted_signers: tuple[str, ...] = ()
    signing_key: Path | None = None
    verify: str = "on"  # on | strict | off
    push: str = "explicit"  # explicit | auto
    remote_timeout: float = 5.0
    # Auto mode (cellcache.cell.auto): every code cell a stage; the cost rule's thresholds (cellcache.cell.cost).
    auto: bool = False
    auto_min_seconds: float = 0.05
    auto_hit_seconds: float = 0.004
    auto_replay: bool = True  # `run --auto`: an unchanged notebook is replayed without a kernel (cellcache.batch.replay)

    @property
    def auto_thresholds(self) -> Any:
        from cellcache.cell.cost import Thresholds

        return Thresholds(min_seconds=self.auto_min_seconds, hit_seconds=self.auto_hit_seconds)

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class Key:
    """One setting, as the reference docs list it (``docs/reference/config.md`` renders ``KEYS``)."""

    field: str  # the Config attribute it sets
    pyproject: bool  # may it be set in [tool.cellcache]? (secrets may not)
    env: str  # its environment variable, "" if none
    default: str  # the default, in words
    doc: str


# Every setting, in one table: the docs render it and a test checks it against Config and the parser.
KEYS: tuple[Key, ...] = (
    Key("dir", True, "CELLCACHE_DIR", "``.cellcache/`` at the project root",
        "Where the local store lives. A relative path resolves against the project root: the nearest folder "
        "upward holding ``pyproject.toml`` or ``.git``, else the working directory."),
    Key("remote", True, "CELLCACHE_REMOTE", "none", "An fsspec URL of the shared store (``s3://bucket/prefix``, ``file:///srv/cache``)."),
    Key("key", False, "CELLCACHE_KEY", "a per-user key file",
        "The local store's HMAC signing key. Only from the environment: a key in a project file travels with the project."),
    Key("disable", True, "CELLCACHE_DISABLE", "``false``", "``true`` (or ``CELLCACHE_DISABLE=1``) makes every ``%%cached`` cell run plainly."),
    Key("verify_local", True, "CELLCACHE_VERIFY_LOCAL", "``true``",
        "Check a local blob's content as it is restored. ``false`` trusts the local disk and makes big restores O(1)."),
    Key("marker", True, "", "``true``", "Show one quiet \"restored from cache\" line on a hit in Jupyter front ends."),
    Key("fork_writes", True, "CELLCACHE_FORK_WRITES", "``true``",
        "On Linux, a miss whose outputs (numpy, pandas, pyarrow or builtin values) pass 64 MiB is written from a "
        "copy-on-write snapshot of the kernel (a fork), so the cell does not wait for its outputs' digests. "
        "``false`` takes the digests on the cell's thread instead."),
    Key("trusted_signers", True, "CELLCACHE_TRUSTED_SIGNERS", "none",
        "The Ed25519 fingerprints (``SHA256:...``, from ``cellcache keys show``) whose remote entries are used. "
        "Trusting a key lets its holder run code on your machine. The variable takes them separated by spaces or commas."),
    Key("signing_key", True, "CELLCACHE_SIGNING_KEY", "the key ``cellcache keys generate`` wrote, if any",
        "Path to this machine's private Ed25519 key, for pushing. Only machines that push have one."),
    Key("verify", True, "CELLCACHE_VERIFY", "``on``",
        "``on``: an unsigned, untrusted or tampered remote entry is a miss with one warning; ``strict``: it fails the cell; "
        "``off``: any signer's entry is used (a private bucket only)."),
    Key("push", True, "CELLCACHE_PUSH", "``explicit``",
        "``explicit``: only ``cellcache push`` and ``run --push`` upload; ``auto``: a signer pushes every stored miss in the background."),
    Key("remote_timeout", True, "CELLCACHE_REMOTE_TIMEOUT", "``5s``",
        "How long each remote call may take, with its unit (``5s``, ``1m``); a remote slower than that is reported once "
        "and then not used this session."),
    Key("auto", True, "CELLCACHE_AUTO", "``false``",
        "``true`` (or ``CELLCACHE_AUTO=1``) turns auto mode on when the extension loads: every code cell is a stage "
        "where caching pays, without ``%%cached`` (see the auto-mode how-to)."),
    Key("auto_min_seconds", True, "CELLCACHE_AUTO_MIN_SECONDS", "``50ms``",
        "Auto mode: a cell whose run took less than this is cheap and runs plainly, unfingerprinted. "
        "A duration with its unit (``50ms``, ``0.2s``); a bare number is an error."),
    Key("auto_hit_seconds", True, "CELLCACHE_AUTO_HIT_SECONDS", "``4ms``",
        "Auto mode: what a hit is taken to cost before one was measured, besides reading its entry. "
        "A step whose restore would cost more than its run is not stored."),
    Key("auto_replay", True, "CELLCACHE_AUTO_REPLAY", "``true``",
        "``cellcache run --auto``: a notebook whose code, parameters, kernel, environment and every file it read are "
        "as they were, and whose last two runs gave the same outputs, is written from the last run without "
        "starting a kernel. ``false`` always starts one."),
)  # fmt: skip


def _auto_settings(source: Mapping[str, Any], where: str, env: bool) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for name in ("auto", "auto_replay"):
        key = f"CELLCACHE_{name.upper()}" if env else name
        if key in source and (env or source[key] is not None):
            value = source[key]
            if env:
                settings[name] = _truthy(value)
            elif isinstance(value, bool):
                settings[name] = value
            else:
                raise ConfigError(f"{where}: {name} must be true or false, not {value!r}")
    for name in ("auto_min_seconds", "auto_hit_seconds"):
        key = f"CELLCACHE_{name.upper()}" if env else name
        if source.get(key):
            settings[name] = _duration(key, source[key], where)
    return settings


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def project_root(start: Path | None = None) -> Path:
    """The nearest folder upward from ``start`` that holds pyproject.toml or .git; else ``start``.

    Every entry point (the magic in any kernel, `cellcache run`, the store commands) finds the
    store from here, so one project has one store wherever a command starts in it.
    """
    start = (Path.cwd() if start is None else Path(start)).resolve()
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return start


def find_pyproject(start: Path) -> Path | None:
    candidate = project_root(start) / "pyproject.toml"
    return candidate if candidate.is_file() else None


def _from_pyproject(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib

    try:
        raw = path.read_bytes()
        # Any spelling of a [tool.cellcache] table names it: without the word, the parse (and the parser's
        # import, at every kernel start) is skipped. A file that isn't TOML is still reported if it names it.
        data = tomllib.loads(raw.decode("utf-8")) if b"cellcache" in raw else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    section = data.get("tool", {}).get("cellcache", {})
    valid = [k.field for k in KEYS if k.pyproject]
    unknown = set(section) - set(valid)
    if unknown:
        raise ConfigError(
            f"{path}: unknown [tool.cellcache] setting(s) {sorted(unknown)}; "
            f"valid settings are {', '.join(valid)} (the signing key belongs in CELLCACHE_KEY, not in a file)"
        )
    settings: dict[str, Any] = {}
    if "dir" in section:
        # A relative dir is relative to the project root (the pyproject's folder), so every notebook
        # of the project shares one store.
        settings["dir"] = (path.parent / os.path.expanduser(str(section["dir"]))).resolve()
    if "remote" in section:
        settings["remote"] = str(section["remote"]) or None
    if "disable" in section:
        settings["disable"] = bool(section["disable"])
    for name in ("verify_local", "fork_writes"):
        if name in section:
            if not isinstance(section[name], bool):
                raise ConfigError(f"{path}: {name} must be true or false, not {section[name]!r}")
            settings[name] = section[name]
    if "marker" in section:
        settings["marker"] = bool(section["marker"])
    settings.update(_remote_settings(section, path))
    settings.update(_auto_settings(section, str(path), env=False))
    return settings


_CHOICES = {"verify": ("on", "strict", "off"), "push": ("explicit", "auto")}


def _choice(name: str, value: Any, where: str) -> str:
    text = str(value).strip().lower()
    if text not in _CHOICES[name]:
        raise ConfigError(f"{where}: {name} must be one of {', '.join(_CHOICES[name])}, not {value!r}")
    return text


def _duration(name: str, value: Any, where: str) -> float:
    # A TOML number is a bare number too: "5" could be seconds or minutes, so the unit is required.
    try:
        return parse_duration(value if isinstance(value, str) else repr(value))
    except ValueError as exc:
        raise ConfigError(f"{where}: {name}: {exc}") from None


def _signers(value: Any, where: str) -> tuple[str, ...]:
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{where}: trusted_signers must be a list of fingerprints (\"SHA256:...\")")
    return tuple(i.strip() for i in items if i.strip())


def _remote_settings(section: Mapping[str, Any], path: Path) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if "trusted_signers" in section:
        settings["trusted_signers"] = _signers(section["trusted_signers"], str(path))
    if section.get("signing_key"):
        # Relative to the project root, though the key itself should live outside the repository.
        settings["signing_key"] = (path.parent / os.path.expanduser(str(section["signing_key"]))).resolve()
    for name in ("verify", "push"):
        if name in section:
            settings[name] = _choice(name, section[name], str(path))
    if "remote_timeout" in section:
        settings["remote_timeout"] = _duration("remote_timeout", section["remote_timeout"], str(path))
    return settings


def resolve(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    root = project_root(cwd)
    settings: dict[str, Any] = {"dir": root / DEFAULT_DIR, "root": root}
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        settings.update(_from_pyproject(pyproject))
    if env.get("CELLCACHE_DIR"):
        settings["dir"] = (root / os.path.expanduser(env["CELLCACHE_DIR"])).resolve()
    if env.get("CELLCACHE_REMOTE"):
        settings["remote"] = env["CELLCACHE_REMOTE"]
    if env.get("CELLCACHE_KEY"):
        settings["key"] = env["CELLCACHE_KEY"].encode()
    if "CELLCACHE_DISABLE" in env:
        settings["disable"] = _truthy(env["CELLCACHE_DISABLE"])
    for name in ("verify_local", "fork_writes"):
        if env.get(f"CELLCACHE_{name.upper()}"):
            settings[name] = _truthy(env[f"CELLCACHE_{name.upper()}"])
    if env.get("CELLCACHE_TRUSTED_SIGNERS"):
        settings["trusted_signers"] = _signers(env["CELLCACHE_TRUSTED_SIGNERS"], "CELLCACHE_TRUSTED_SIGNERS")
    if env.get("CELLCACHE_SIGNING_KEY"):
        settings["signing_key"] = Path(os.path.expanduser(env["CELLCACHE_SIGNING_KEY"])).resolve()
    for name in ("verify", "push"):
        if env.get(f"CELLCACHE_{name.upper()}"):
            settings[name] = _choice(name, env[f"CELLCACHE_{name.upper()}"], f"CELLCACHE_{name.upper()}")
    if env.get("CELLCACHE_REMOTE_TIMEOUT"):
        settings["remote_timeout"] = _duration("remote_timeout", env["CELLCACHE_REMOTE_TIMEOUT"], "CELLCACHE_REMOTE_TIMEOUT")
    settings.update(_auto_settings(env, "environment", env=True))
    return Config(**settings)


def notebook_name(path: str | os.PathLike[str], root: Path) -> str:
    """A notebook's identity: its path relative to the project root, with "/" separators.

    A notebook outside the root keeps its absolute path: it is still one notebook, not a
    relative path that would collide with one inside the project.
    """
    absolute = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    try:
        return absolute.relative_to(root.resolve()).as_posix()
    except ValueError:
        return absolute.as_posix()


def kernel_notebook(env: Mapping[str, str] | None = None, user_ns: Mapping[str, Any] | None = None) -> str:
    """The notebook this kernel runs, relative to its project root; "" for a plain IPython session.

    The root is found from the notebook's folder, not from the kernel's working directory
    (papermill runs kernels wherever it was started), so a notebook has one name.
    Jupyter Server gives JPY_SESSION_NAME as an absolute path, or as a path relative to its
    own root; in the second case the kernel runs in the notebook's folder, so the file name
    is found there.
    """
    env = os.environ if env is None else env
    found = env.get(NOTEBOOK_ENV) or ""
    if not found and user_ns is not None:
        found = str(user_ns.get(VSCODE_NOTEBOOK_VAR) or "")
    if not found:
        return ""
    path = Path(os.path.expanduser(found))
    if not path.is_absolute():
        here = Path.cwd() / path
        path = here if here.exists() else Path.cwd() / path.name
    return notebook_name(path, project_root(path.parent))
