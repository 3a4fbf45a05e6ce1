"""The remote's command-line verbs: ``keys``, ``push``, ``pull`` and ``remote status|verify|gc``.

Registered on ``cellcache.cli.main.main`` by the section at the end of cli.py.
Glue only: parse, call ``cellcache.remote.commands`` / ``cellcache.remote.signer_keys``, print.
"""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import click

from cellcache.cli.common import json_option

from cellcache import config as _config
from cellcache.remote import commands as _remote
from cellcache.remote import signer_keys as _keys
from cellcache.units import format_seconds, format_size
from cellcache.store.base import StepRef


def _local(cwd: Path | None = None) -> Any:
    from cellcache.store.local import open_store

    return open_store(_config.resolve(cwd))


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value.to_json(), indent=2))


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


@contextmanager
def remote_in_kernels(enabled: bool) -> Iterator[None]:
    """`status` looks at the local store only, unless --remote: the kernels it starts inherit this."""
    saved = os.environ.get(_remote.OFFLINE_ENV)
    if not enabled:
        os.environ[_remote.OFFLINE_ENV] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(_remote.OFFLINE_ENV, None)
        else:
            os.environ[_remote.OFFLINE_ENV] = saved


# keys --------------------------------------------------------------------------------


@click.group(name="keys")
def keys_group() -> None:
    """This machine's Ed25519 signing key, for pushing to a shared remote.

    Only machines that push (CI, a maintainer) need a key. Readers list the
    fingerprints they trust in [tool.cellcache] trusted_signers or
    CELLCACHE_TRUSTED_SIGNERS.

    Trusting a key lets whoever holds it run code on your machine: a cached
    entry is a pickle, and restoring it runs code. Trust only keys held by
    machines you would let run your notebooks.
    """


@keys_group.command(name="generate")
@click.option(
    "--path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the private key (default: your user config folder, outside every repository).",
)
@click.option("--allow-in-repository", is_flag=True, help="Allow a path inside a git repository (not recommended).")
@json_option("the result")
def keys_generate(path: Path | None, allow_in_repository: bool, as_json: bool) -> None:
    """Create a private signing key (mode 0600) and print its public fingerprint.

    Never overwrites an existing key. Give the fingerprint to the readers,
    who add it to trusted_signers; keep the private key secret (a CI secret,
    not a file in the repository).
    """
    info = _keys.generate(path, allow_in_repository=allow_in_repository)
    if as_json:
        _echo_json(info)
        return
    click.echo(f"cellcache: wrote a new signing key to {info.path} (mode 0600)")
    click.echo(f"fingerprint: {info.fingerprint}")
    click.echo("Readers who trust this fingerprint let its holder run code on their machines; keep the key secret.")


@keys_group.command(name="show")
@json_option("the result")
def keys_show(as_json: bool) -> None:
    """Print this machine's signing key fingerprint (SHA256:…), for the readers' trusted_signers."""
    cfg = _config.resolve()
    info = _keys.show(cfg.signing_key)
    if info is None:
        raise click.ClickException(
            f"no signing key (looked for signing_key / CELLCACHE_SIGNING_KEY, then {_keys.default_key_path()}); "
            "create one with `cellcache keys generate`"
        )
    if as_json:
        _echo_json(info)
    else:
        click.echo(f"{info.fingerprint}  {info.path}")


# push and pull -------------------------------------------------------------------------


def _print_push(result: _remote.PushResult, as_json: bool, err: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2), err=err)
        return
    for key, why in result.failed:
        click.echo(f"cellcache: push of {key} failed: {why}", err=True)
    click.echo(
        f"cellcache: pushed {_plural(len(result.pushed), 'entry', 'entries')} to {result.remote} "
        f"({result.present} already there, {len(result.failed)} failed) in {format_seconds(result.seconds)}",
        err=err,
    )


@click.command(name="push")
@click.argument("notebooks", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="[NB.ipynb...]")
@click.option("--step", "steps", multiple=True, metavar="NAME", help="Only this step ([NB:]NAME; repeatable).")
@click.option("--all", "push_all", is_flag=True, help="Every local entry (the default when no notebook or step is given).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=4, show_default=True, help="Entries uploaded at once.")
@json_option("the result")
def push_command(notebooks: tuple[Path, ...], steps: tuple[str, ...], push_all: bool, jobs: int, as_json: bool) -> None:
    """Upload local entries that are not on the remote yet, signed with this machine's key.

    Blobs go first and the signed manifest last, each written once, so a push
    that is interrupted leaves nothing a reader would take. Only signers push:
    see `cellcache keys generate`.
    """
    if push_all and (notebooks or steps):
        raise click.UsageError("--all pushes every entry; give it alone, or select with NB... / --step")
    cfg = _config.resolve()
    names: set[str] | None = None
    refs: set[StepRef] | None = None
    for text in steps:
        notebook, sep, name = text.rpartition(":")
        if sep:
            refs = (refs or set()) | {StepRef(notebook, name)}
        else:
            names = (names or set()) | {name}
    wanted_notebooks = {_config.notebook_name(nb, cfg.root or Path.cwd()) for nb in notebooks} if notebooks else None
    result = _remote.push(cfg, _local(), steps=refs, step_names=names, notebooks=wanted_notebooks, jobs=jobs)
    _print_push(result, as_json)
    if result.failed:
        sys.exit(1)


def push_after_run(results: Sequence[Any], as_json: bool = False) -> bool:
    """`cellcache run --push`: push the entries of the steps that ran, per notebook's store. True if all went."""
    ok = True
    for result in results:
        folder = Path(result.path).resolve().parent
        cfg = _config.resolve(folder)
        notebook = _config.notebook_name(result.path, cfg.root or folder)
        refs = {StepRef(notebook, c.step) for c in result.cells if c.step}
        if not refs:
            continue
        pushed = _remote.push(cfg, _local(folder), steps=refs)
        _print_push(pushed, as_json, err=True)
        ok = ok and not pushed.failed
    return ok


@click.command(name="pull")
@click.argument("notebook", required=False, type=click.Path(dir_okay=False, path_type=Path), metavar="[NB.ipynb]")
@click.option("--step", metavar="[NB:]NAME", default=None, help="Only this step.")
@json_option("the result")
def pull_command(notebook: Path | None, step: str | None, as_json: bool) -> None:
    """Prefetch the latest trusted remote entry of each step of NB (or of one --step), for offline work."""
    if notebook is None and step is None:
        raise click.UsageError("give a notebook, --step NAME, or both")
    cfg = _config.resolve()
    nb = _config.notebook_name(notebook, cfg.root or Path.cwd()) if notebook is not None else None
    name = step
    if step and ":" in step:
        nb, _, name = step.rpartition(":")
    result = _remote.pull(cfg, _local(), notebook=nb, step=name)
    if as_json:
        _echo_json(result)
        return
    for problem in result.problems:
        click.echo(f"cellcache: refused: {problem}", err=True)
    click.echo(
        f"cellcache: pulled {_plural(len(result.pulled), 'step')}, {result.already} already local, "
        f"{len(result.missing)} with no trusted entry on {result.remote}"
    )


# remote ------------------------------------------------------------------------------


@click.group(name="remote")
def remote_group() -> None:
    """The shared remote store: status, verify, gc."""


@remote_group.command(name="status")
@click.option("--no-count", is_flag=True, help="Do not list the remote to count its entries.")
@json_option("the result")
def remote_status(no_count: bool, as_json: bool) -> None:
    """The remote's URL, whether it answers, whether this machine can sign, whom it trusts, and what it holds.

    Exit code 1 if a remote is configured and does not answer.
    """
    st = _remote.status(_config.resolve(), count=not no_count)
    if as_json:
        _echo_json(st)
        if st.remote and not st.reachable:
            sys.exit(1)
        return
    click.echo(f"remote: {st.remote or '-'}")
    click.echo(f"reachable: {'yes' if st.reachable else 'no'}" + (f" ({st.error})" if st.error else ""))
    click.echo(f"can sign: {'yes, ' + str(st.fingerprint) if st.can_sign else 'no (no signing key: this machine only reads)'}")
    click.echo(f"trusted signers: {', '.join(st.trusted_signers) or 'none (no remote entry will be used)'}")
    click.echo(f"verify: {st.verify}; push: {st.push}")
    if st.entries is not None:
        click.echo(
            f"entries: {st.entries} ({st.trusted_entries} by trusted signers); "
            f"blobs: {st.blobs} ({format_size(st.blob_bytes or 0)})"
        )
    if st.remote and not st.reachable:
        sys.exit(1)


@remote_group.command(name="verify")
@click.option("--repair", is_flag=True, help="Delete the broken manifests, so readers stop trying them.")
@json_option("the result")
def remote_verify(repair: bool, as_json: bool) -> None:
    """Check every trusted manifest's signature and the SHA-256 of every blob it names.

    Exit code 1 if something is broken and --repair was not given.
    """
    report = _remote.verify(_config.resolve(), repair=repair)
    if as_json:
        _echo_json(report)
    else:
        for path, problem in report.broken:
            click.echo(f"broken: {path}: {problem}")
        verdict = "all sound" if not report.broken else f"{len(report.broken)} broken" + (", deleted" if repair else "; run with --repair to delete them")
        click.echo(
            f"cellcache: checked {_plural(report.checked, 'entry', 'entries')} on {report.remote} "
            f"({report.untrusted} by untrusted signers, not read): {verdict}"
        )
    if report.broken and not repair:
        sys.exit(1)


def remote_gc_victims(config: Any, older_than: float | None, max_size: int | None) -> tuple[int, int]:
    """(manifests ``remote.gc`` would delete, manifests there are): the same selection, without deleting.

    Reads the listing (and, for --max-size, the manifests) once more: the price of asking before
    a shared store is emptied.
    """
    import time

    from cellcache.errors import CacheError
    from cellcache.remote.signing import open_envelope

    remote = _remote.open_remote(config)
    if remote is None:
        return 0, 0
    try:
        now = time.time()
        manifests = sorted(remote.walk("entries"), key=lambda m: m["mtime"])
        doomed = [m for m in manifests if older_than is not None and now - m["mtime"] > older_than]
        if max_size is not None:
            blobs = {b["path"].rsplit("/", 1)[-1]: b["size"] for b in remote.walk("blobs")}
            total = sum(blobs.values())
            for m in manifests:
                if total <= max_size:
                    break
                if m not in doomed:
                    doomed.append(m)
                key, _signer = _remote.parse_entry_path(m["path"])
                try:
                    entry = open_envelope(remote.fs.cat_file(m["path"]), key=key, signer_id=None, trusted=None)
                    total -= sum(blobs.get(b.sha256, 0) for b in entry.blobs)
                except CacheError:
                    pass
        return len(doomed), len(manifests)
    finally:
        remote.close()


def register(main: click.Group, size_type: click.ParamType, duration_type: click.ParamType) -> None:
    @remote_group.command(name="gc")
    @click.option("--older-than", type=duration_type, default=None, metavar="AGE", help="Delete entries pushed more than AGE ago (90d).")
    @click.option("--max-size", type=size_type, default=None, metavar="SIZE", help="Delete the oldest entries until the blobs fit in SIZE.")
    @click.option("-y", "--yes", is_flag=True, help="Do not ask, even when more than half of the entries would go.")
    @json_option("the result")
    def remote_gc(older_than: float | None, max_size: int | None, yes: bool, as_json: bool) -> None:
        """Delete old remote entries, then the blobs no remaining entry names. Give at least one option.

        Sizes and ages need a unit (5GB, 90d). A gc that would delete more than half of the
        remote's entries asks first, unless --yes: everyone who shares the remote loses them.
        """
        if older_than is None and max_size is None:
            raise click.UsageError("give --older-than, --max-size or both (for example: cellcache remote gc --older-than 90d)")
        config = _config.resolve()
        if not yes:
            victims, total = remote_gc_victims(config, older_than, max_size)
            if total and victims * 2 > total:
                click.confirm(f"remote gc would delete {victims} of {_plural(total, 'entry', 'entries')} at {config.remote}. Go on?", abort=True, err=True)
        report = _remote.gc(config, older_than=older_than, max_size=max_size)
        if as_json:
            _echo_json(report)
            return
        click.echo(
            f"cellcache: remote gc deleted {_plural(report.entries, 'entry', 'entries')} and "
            f"{_plural(report.blobs, 'blob')}, freed {format_size(report.freed)}"
        )

    for command in (keys_group, push_command, pull_command, remote_group):
        main.add_command(command)
