"""The differential harness: a notebook run plainly against the same notebook with every cell cached.

For one notebook of the corpus (corpus.toml), in a folder of its own:

1. ``plain``: the notebook as it is, through nbclient, in a real ipykernel kernel.
2. ``cold``: every code cell under ``%%cached``, through ``cellcache.batch.run_job`` (what
   ``cellcache run`` does: a new kernel with the extension loaded, one report line per step),
   against an empty store.
3. The cold run's executed notebook is saved into the notebook's folder, as Jupyter or
   ``cellcache run --inplace`` would: the surroundings change as they do for a user.
4. ``warm``: the cached notebook again, in a new kernel, on the same store.
5. Per mutation (a literal in one cell, or a data file's values): plain, and cached on the warm
   store, both on the mutated notebook; then the original is put back.

Every cached run is compared cell by cell with the plain run of the same source:
- a hit whose outputs differ is a **stale hit**;
- a non-hit whose outputs differ is a **difference** (a hit upstream left the process otherwise
  than a run would, e.g. rcParams not replayed);
- a warm non-hit gets a cause from cellcache's own report (the step's status, reason and the
  CacheWarnings of the cold and warm runs);
- in a mutated run, a non-hit in a cell the mutation cannot reach (a dataflow over the cells'
  names, see ``reach``) that hit in the warm run is a **needless miss**.

Outputs compared: stdout and stderr text (CacheWarnings are cellcache's own channel and are
reported apart), text/plain of results and displays, PNG images by size and pixels, errors.
HTML is not compared: every HTML output here has a text/plain twin, and scikit-learn's HTML
carries a per-kernel counter. Legitimately varying text (timings, addresses, clocks) is
normalized by the manifest's ``normalize`` rules, each with its reason; ``0x...`` addresses
are normalized everywhere.
"""
from __future__ import annotations

import ast
import base64
import contextlib
import io
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import nbformat

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE / "notebooks"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The inline backend, as a Jupyter front end has it: a test session's MPLBACKEND=Agg would
# otherwise reach the kernels and no figure would be displayed at all.
KERNEL_ENV = {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
CELL_TIMEOUT = 300.0
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_CACHE_WARNING = re.compile(r"^.*CacheWarning: .*\n(?:[ \t]+.*\n)?", re.MULTILINE)


# the manifest ------------------------------------------------------------------


def load_manifest(path: Path | None = None) -> list[dict[str, Any]]:
    data = tomllib.loads((path or HERE / "corpus.toml").read_text(encoding="utf-8"))
    return list(data["notebook"])


def entry_by_id(ident: str, manifest: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    for entry in manifest or load_manifest():
        if entry["id"] == ident:
            return entry
    raise KeyError(ident)


# notebooks ---------------------------------------------------------------------


def annotate(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The same notebook with ``%%cached`` on every code cell (a cell that has its own cell magic keeps it)."""
    out = nbformat.reads(nbformat.writes(nb), as_version=4)
    for cell in out.cells:
        if cell.cell_type == "code" and cell.source.strip() and not cell.source.lstrip().startswith("%%"):
            cell.source = "%%cached\n" + cell.source
    return out


def apply_literal(nb: nbformat.NotebookNode, mutation: dict[str, Any]) -> nbformat.NotebookNode:
    out = nbformat.reads(nbformat.writes(nb), as_version=4)
    cell = out.cells[mutation["cell"]]
    if mutation["old"] not in cell.source:
        raise ValueError(f"mutation {mutation['id']}: {mutation['old']!r} is not in cell {mutation['cell']}")
    cell.source = cell.source.replace(mutation["old"], mutation["new"], 1)
    return out


def scale_data(text: str, factor: float) -> str:
    """The same data file with its last numeric column multiplied by factor; headers and comments kept."""
    lines = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        end = line[len(body):]
        sep = "," if "," in body else None
        parts = body.split(sep) if sep else body.split()
        try:
            value = float(parts[-1])
        except (ValueError, IndexError):
            lines.append(line)
            continue
        parts[-1] = (" " if sep and parts[-1].startswith(" ") else "") + repr(value * factor)
        lines.append((sep.join(parts) if sep else "  ".join(parts)) + end)
    return "".join(lines)


# outputs -----------------------------------------------------------------------


@dataclass
class Output:
    kind: str  # stdout, stderr, text, image, error
    text: str = ""
    size: tuple[int, int] | None = None  # images
    png: bytes = b""

    def describe(self) -> str:
        if self.kind == "image":
            return f"image {self.size[0]}x{self.size[1]}" if self.size else "image"
        return f"{self.kind}: {self.text[:60]!r}"


def _png_size(png: bytes) -> tuple[int, int]:
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def normalize_text(text: str, rules: list[dict[str, Any]], index: int) -> str:
    text = _ADDRESS.sub("0x…", text)
    for rule in rules:
        cells = rule.get("cells")
        if cells is not None and index not in cells:
            continue
        if "pattern" in rule:
            text = re.sub(rule["pattern"], rule["with"], text, flags=re.MULTILINE)
        if rule.get("numbers") == "masked":
            # The notebook's own unseeded draws: the numbers vary, and with them the padding and
            # the line breaks numpy and pandas choose; the text around them must not.
            text = re.sub(r"\s+", "", _NUMBER.sub("#", text))
    return text


def cell_outputs(cell: Any, rules: list[dict[str, Any]], index: int) -> tuple[list[Output], list[str]]:
    """The comparable outputs of one executed cell, and the CacheWarnings it showed."""
    outs: list[Output] = []
    warnings: list[str] = []
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            text = out.get("text", "")
            if out.get("name") == "stderr":
                warnings += [w.strip().splitlines()[0] for w in _CACHE_WARNING.findall(text)]
                text = _CACHE_WARNING.sub("", text)
            if not text:
                continue
            name = out.get("name", "stdout")
            if outs and outs[-1].kind == name:
                outs[-1].text += text
            else:
                outs.append(Output(name, text))
        elif kind in ("display_data", "execute_result"):
            if out.get("metadata", {}).get("cellcache", {}).get("marker"):
                continue  # the "restored from cache" line a hit adds: cellcache's, not the notebook's
            data = out.get("data", {})
            if "image/png" in data:
                png = base64.b64decode(data["image/png"])
                outs.append(Output("image", size=_png_size(png), png=png))
            elif "text/plain" in data:
                outs.append(Output("text", data["text/plain"]))
        elif kind == "error":
            outs.append(Output("error", f"{out.get('ename')}: {out.get('evalue')}"))
    for o in outs:
        if o.kind != "image":
            o.text = normalize_text(o.text, rules, index)
    return outs, warnings


def _images_equal(a: bytes, b: bytes) -> bool:
    if a == b:
        return True
    try:
        import numpy as np
        from PIL import Image
    except ImportError:  # pragma: no cover - matplotlib brings both
        return False
    ia, ib = (np.asarray(Image.open(io.BytesIO(x)).convert("RGBA"), dtype=np.int16) for x in (a, b))
    if ia.shape != ib.shape:
        return False
    # Same size, nearly the same pixels: antialiasing noise, never a different plot.
    return float(np.abs(ia - ib).mean()) < 0.5


def pixels_compared(rules: list[dict[str, Any]], index: int) -> bool | str:
    """How a cell's images are compared: True (size and pixels), or a rule's "size" or "count"."""
    for r in rules:
        if r.get("images") and index in r.get("cells", []):
            return r["images"]
    return True


def _comparable(outputs: list[Output]) -> list[Output]:
    """stdout whole, then stderr whole, then the rich outputs in order.

    Jupyter does not order one stream against the other (each is flushed on its own), so a
    warning printed before or after a summary is the same output.
    """
    streams = []
    for name in ("stdout", "stderr"):
        text = "".join(o.text for o in outputs if o.kind == name)
        if text:
            streams.append(Output(name, text))
    return streams + [o for o in outputs if o.kind not in ("stdout", "stderr")]


def differences(plain: list[Output], other: list[Output], pixels: bool | str = True) -> list[str]:
    """What differs between two cells' outputs, one short phrase each; [] when they are equal.

    ``pixels``: True compares images by size and pixels; "size" by size only; "count" only
    counts them (a cell whose figures show the notebook's own unseeded draws).
    """
    found = []
    plain, other = _comparable(plain), _comparable(other)
    if [o.kind for o in plain] != [o.kind for o in other]:
        return [f"outputs {[o.describe() for o in plain]} vs {[o.describe() for o in other]}"]
    for n, (a, b) in enumerate(zip(plain, other)):
        if a.kind == "image":
            if pixels == "count":
                continue
            if a.size != b.size:
                found.append(f"image {n}: {a.size[0]}x{a.size[1]} plain, {b.size[0]}x{b.size[1]} cached")
            elif pixels is True and not _images_equal(a.png, b.png):
                found.append(f"image {n}: same size {a.size[0]}x{a.size[1]}, different pixels")
        elif a.text != b.text:
            al, bl = a.text.splitlines(), b.text.splitlines()
            first = next((i for i, (x, y) in enumerate(zip(al, bl)) if x != y), min(len(al), len(bl)))
            x = al[first] if first < len(al) else "<end>"
            y = bl[first] if first < len(bl) else "<end>"
            found.append(f"{a.kind} line {first + 1}: {x[:70]!r} plain, {y[:70]!r} cached")
    return found


# runs --------------------------------------------------------------------------


@dataclass
class CellRun:
    index: int
    status: str  # plain, hit, miss, error, not run
    seconds: float
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)


@dataclass
class Run:
    label: str
    cells: dict[int, CellRun]
    seconds: float  # the sum of the code cells' execution times
    wall: float  # with the kernel's start and shutdown
    error: str | None = None


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cell_seconds(cell: Any) -> float:
    ex = cell.get("metadata", {}).get("execution", {})
    try:
        from datetime import datetime

        start = datetime.fromisoformat(ex["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(ex["shell.execute_reply"].replace("Z", "+00:00"))
        return (end - start).total_seconds()
    except (KeyError, ValueError):
        return 0.0


def run_plain(path: Path, rules: list[dict[str, Any]], label: str = "plain") -> tuple[Run, nbformat.NotebookNode]:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=int(CELL_TIMEOUT), record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
    )  # fmt: skip
    started = time.perf_counter()
    error = None
    with _environ(KERNEL_ENV):
        try:
            client.execute(env={**os.environ, **KERNEL_ENV})
        except CellExecutionError as exc:
            error = str(exc).splitlines()[-1] if str(exc) else "cell failed"
    wall = time.perf_counter() - started
    cells = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        outs, warned = cell_outputs(cell, rules, i)
        failed = any(o.kind == "error" for o in outs)
        status = "error" if failed else ("plain" if cell.get("execution_count") else "not run")
        cells[i] = CellRun(i, status, _cell_seconds(cell), None, warned, outs)
    return Run(label, cells, sum(c.seconds for c in cells.values()), wall, error), nb


def run_cached(path: Path, store: Path, out: Path, rules: list[dict[str, Any]], label: str) -> tuple[Run, nbformat.NotebookNode | None]:
    """``cellcache run`` on the annotated notebook, in a new kernel: each cell's status from cellcache's own report."""
    from cellcache import batch

    options = batch.RunOptions(store_dir=store, timeout=CELL_TIMEOUT)
    started = time.perf_counter()
    with _environ(KERNEL_ENV):
        result = batch.run_job(batch.Job(path, output=out), options)
    wall = time.perf_counter() - started
    nb = nbformat.read(out, as_version=4) if out.exists() else None
    cells = {}
    for r in result.cells:
        cell = nb.cells[r.index] if nb is not None else {}
        outs, warned = cell_outputs(cell, rules, r.index)
        cells[r.index] = CellRun(r.index, r.status, r.seconds, r.reason, list(r.warnings) or warned, outs)
    return Run(label, cells, sum(c.seconds for c in cells.values()), wall, result.error), nb


# reach -------------------------------------------------------------------------


def _parse(source: str) -> ast.Module | None:
    lines = [("pass  # " + ln) if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _names(tree: ast.AST) -> tuple[set[str], set[str]]:
    loads, stores = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loads if isinstance(node.ctx, ast.Load) else stores).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stores.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                stores.add((alias.asname or alias.name).split(".")[0])
    return loads, stores


_STATE_CALL = re.compile(
    r"\b(plt\.rc|plt\.style\.use|rcParams|mpl\.rc|matplotlib\.rc|set_printoptions|np\.seterr|pd\.set_option|"
    r"pd\.options|sns\.set\w*|set_config|warnings\.\w*filter|os\.chdir|sys\.path|os\.environ|getcontext)"
)


def reach(nb: nbformat.NotebookNode, cell: int | None = None, data_file: str | None = None) -> set[int]:
    """The code cells a change can reach: a literal in ``cell``, or the content of ``data_file``.

    Conservative (it over-reaches, so a miss it calls needless is needless): a reached cell taints
    every name it binds and every non-module name it reads (it may have mutated it); a later cell
    that reads a tainted name, or calls a function whose body does, is reached; a reached cell
    that changes process state (rcParams, print options, ...) reaches every later cell; a cell
    whose source can't be parsed is reached.
    """
    code = [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    trees = {i: _parse(src) for i, src in code}
    modules: set[str] = set()
    functions: dict[str, set[str]] = {}
    for tree in trees.values():
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules |= {(a.asname or a.name).split(".")[0] for a in node.names}
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                functions.setdefault(node.name, set()).update(_names(node)[0])
    reached: set[int] = set()
    tainted: set[str] = set()
    everything_after: int | None = None
    for i, src in code:
        tree = trees[i]
        direct = (cell is not None and i == cell) or (data_file is not None and Path(data_file).name in src)
        if tree is None:
            hit = bool(reached) or direct
            loads, stores = set(), set()
        else:
            loads, stores = _names(tree)
            called = {f for f in loads if f in functions and functions[f] & tainted}
            hit = direct or bool(loads & tainted) or bool(called) or everything_after is not None
        if not hit:
            continue
        reached.add(i)
        tainted |= stores | (loads - modules)
        tainted |= {f for f, body in functions.items() if body & tainted}
        if _STATE_CALL.search(src) and everything_after is None:
            everything_after = i
    return reached


# one notebook, judged ------------------------------------------------------------


@dataclass
class Verdict:
    """One cached run of one notebook, judged against the plain run of the same source."""

    run: str  # cold, warm, or the mutation's id
    cells: int
    hits: int
    nonhits: dict[int, str]  # cell -> cause
    stale: dict[int, list[str]]  # a hit whose outputs differ from plain
    differs: dict[int, list[str]]  # a non-hit whose outputs differ from plain
    needless: dict[int, str] = field(default_factory=dict)  # mutation runs: a non-hit the change can't reach, that hit warm
    unreached: dict[int, str] = field(default_factory=dict)  # mutation runs: every non-hit the change can't reach
    reached: list[int] = field(default_factory=list)
    seconds: float = 0.0
    plain_seconds: float = 0.0
    error: str | None = None

    @property
    def ratio(self) -> float:
        return self.seconds / self.plain_seconds if self.plain_seconds else float("nan")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = round(self.ratio, 3) if self.plain_seconds else None
        d["nonhits"] = {str(k): v for k, v in self.nonhits.items()}
        d["stale"] = {str(k): v for k, v in self.stale.items()}
        d["differs"] = {str(k): v for k, v in self.differs.items()}
        d["needless"] = {str(k): v for k, v in self.needless.items()}
        d["unreached"] = {str(k): v for k, v in self.unreached.items()}
        return d


def _not_stored(cold: CellRun | None) -> str | None:
    for w in cold.warnings if cold else []:
        if "not stored" in w or "ran uncached" in w:
            return w.split("cellcache: ", 1)[-1]
    return None


def binders(nb: nbformat.NotebookNode) -> dict[int, set[str]]:
    """The names each code cell binds (None-safe: a cell that can't be parsed binds nothing we know)."""
    out = {}
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code" and c.source.strip():
            tree = _parse(c.source)
            out[i] = _names(tree)[1] if tree is not None else set()
    return out


def cause(
    cell: CellRun, cold: CellRun | None, earlier: dict[int, CellRun], bound: dict[int, set[str]] | None = None, mutated: bool = False
) -> str:
    """Why a cached cell did not hit, in the issue's terms: uncached, not stored, randomness, needless, other."""
    reason = cell.reason or ""
    if cell.status == "plain":
        why = next((w.split("cellcache: ", 1)[-1] for w in cell.warnings if "uncached" in w), reason)
        return f"uncached: {why}"
    if cell.status == "error":
        return f"error: {reason}"
    if cell.status != "miss":
        return f"{cell.status}: {reason}"
    first = reason.split("; ")[0]
    if "first run of this step" in reason and mutated:
        # The mutated notebook is a file of its own: its steps have no history for cellcache to explain against.
        return "unexplained: cellcache says 'first run of this step' (a step of the mutated notebook's own file)"
    if "first run of this step" in reason:
        return f"not stored: {_not_stored(cold) or 'no entry after the cold run'}"
    if "random generator" in first:
        return f"randomness: {reason}"
    if "implicit file" in first:
        return f"needless (surroundings): {reason}"
    if "input `" in first:
        names = re.findall(r"input `([^`]+)`", reason)
        # Who made each changed input last, before this cell: a non-hit there explains the change;
        # if every maker hit, the restored value digests otherwise than the stored one.
        makers = {n: max((i for i in earlier if n in (bound or {}).get(i, set())), default=None) for n in names}
        missed = sorted({i for i in makers.values() if i is not None and earlier[i].status != "hit"})
        if missed:
            return f"after an upstream non-hit (cells {missed}): {reason}"
        if any(i is not None for i in makers.values()):
            return f"unstable digest: {reason} (made by a hit in cells {sorted({i for i in makers.values() if i is not None})})"
        return f"other: {reason}"
    return f"other: {reason}"


def judge(
    label: str, plain: Run, cached: Run, cold: Run | None, reached: set[int] | None = None, warm: Run | None = None,
    rules: list[dict[str, Any]] | None = None, bound: dict[int, set[str]] | None = None,
) -> Verdict:
    nonhits, stale, differs, needless, unreached = {}, {}, {}, {}, {}
    hits = 0
    earlier: dict[int, CellRun] = {}
    for i, p in sorted(plain.cells.items()):
        c = cached.cells.get(i)
        if c is None:
            nonhits[i] = "not run"
            continue
        diff = differences(p.outputs, c.outputs, pixels_compared(rules or [], i))
        if c.status == "hit":
            hits += 1
            if diff:
                stale[i] = diff
        else:
            nonhits[i] = cause(c, cold.cells.get(i) if cold else None, earlier, bound, mutated=reached is not None)
            if diff:
                differs[i] = diff
            if reached is not None and i not in reached:
                unreached[i] = nonhits[i]
                if warm is not None and warm.cells.get(i, c).status == "hit":
                    needless[i] = nonhits[i]
        earlier[i] = c
    return Verdict(
        label, len(plain.cells), hits, nonhits, stale, differs, needless, unreached,
        sorted(reached) if reached is not None else [], cached.seconds, plain.seconds, cached.error or plain.error,
    )  # fmt: skip


@dataclass
class NotebookReport:
    id: str
    verdicts: list[Verdict]
    plain_seconds: float
    plain_wall: float
    plain_error: str | None = None

    def verdict(self, run: str) -> Verdict:
        return next(v for v in self.verdicts if v.run == run)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "plain_seconds": round(self.plain_seconds, 3), "plain_wall": round(self.plain_wall, 3),
            "plain_error": self.plain_error, "runs": [v.to_json() for v in self.verdicts],
        }  # fmt: skip


def run_notebook(entry: dict[str, Any], workdir: Path, mutations: bool = True, log: Any = None) -> NotebookReport:
    """Every run of one corpus notebook in ``workdir/<id>/``, with its store in ``workdir/<id>-store``."""
    ident = entry["id"]
    rules = entry.get("normalize", [])
    folder = workdir / ident
    store = workdir / f"{ident}-store"
    outdir = workdir / f"{ident}-out"
    for d in (folder, store, outdir):
        shutil.rmtree(d, ignore_errors=True)
    folder.mkdir(parents=True)
    outdir.mkdir()
    source = nbformat.read(NOTEBOOKS / f"{ident}.ipynb", as_version=4)
    for data in entry.get("data", []):
        shutil.copy2(NOTEBOOKS / Path(data).name, folder / Path(data).name)
    muts = entry.get("mutation", []) if mutations else []
    # Every notebook file any run will use is written before the first run: the folder's
    # listing then changes only where the harness means it to (step 3).
    plain_path, cached_path = folder / f"{ident}.ipynb", folder / f"{ident}.cached.ipynb"
    nbformat.write(source, plain_path)
    nbformat.write(annotate(source), cached_path)
    for m in muts:
        if m["kind"] == "literal":
            mutated = apply_literal(source, m)
            nbformat.write(mutated, folder / f"{ident}.{m['id']}.ipynb")
            nbformat.write(annotate(mutated), folder / f"{ident}.{m['id']}.cached.ipynb")

    def say(text: str) -> None:
        if log is not None:
            print(f"  {ident}: {text}", file=log, flush=True)

    plain, _ = run_plain(plain_path, rules)
    say(f"plain {plain.seconds:.1f}s{' ERROR ' + plain.error if plain.error else ''}")
    cold, cold_nb = run_cached(cached_path, store, outdir / "cold.ipynb", rules, "cold")
    say(f"cold {cold.seconds:.1f}s")
    if cold_nb is not None:
        nbformat.write(cold_nb, folder / f"{ident}.executed.ipynb")  # as a saved notebook lands beside its source
    warm, _ = run_cached(cached_path, store, outdir / "warm.ipynb", rules, "warm")
    say(f"warm {warm.seconds:.1f}s")
    bound = binders(source)
    verdicts = [judge("cold", plain, cold, None, rules=rules, bound=bound), judge("warm", plain, warm, cold, rules=rules, bound=bound)]
    for m in muts:
        if m["kind"] == "literal":
            mplain, _ = run_plain(folder / f"{ident}.{m['id']}.ipynb", rules, m["id"])
            mcached, _ = run_cached(folder / f"{ident}.{m['id']}.cached.ipynb", store, outdir / f"{m['id']}.ipynb", rules, m["id"])
            reached = reach(source, cell=m["cell"])
        else:
            target = folder / Path(m["file"]).name
            original = target.read_bytes()
            try:
                target.write_text(scale_data(original.decode("utf-8"), float(m.get("factor", 1.1))), encoding="utf-8")
                mplain, _ = run_plain(plain_path, rules, m["id"])
                mcached, _ = run_cached(cached_path, store, outdir / f"{m['id']}.ipynb", rules, m["id"])
            finally:
                target.write_bytes(original)
            reached = reach(source, data_file=m["file"])
        say(f"{m['id']} {mcached.seconds:.1f}s")
        verdicts.append(judge(m["id"], mplain, mcached, cold, reached, warm, rules, bound))
    return NotebookReport(ident, verdicts, plain.seconds, plain.wall, plain.error)
