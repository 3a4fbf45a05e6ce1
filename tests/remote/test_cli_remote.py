"""The remote's commands through click, against moto: keys, push, pull, remote status|verify|gc."""
from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellcache.cli.main import main
from cellcache.store.local import LocalStore

from .conftest import BUCKET
from .helpers import local_entry, local_manifests


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def invoke(cli: CliRunner, *args: str, code: int = 0) -> str:
    result = cli.invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def ci_env(s3, signer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    monkeypatch.setenv("CELLCACHE_REMOTE", s3.url)
    monkeypatch.setenv("CELLCACHE_SIGNING_KEY", str(signer.path))
    monkeypatch.setenv("CELLCACHE_TRUSTED_SIGNERS", signer.fingerprint)
    monkeypatch.setenv("CELLCACHE_DIR", str(tmp_path / "ci-store"))
    return LocalStore(tmp_path / "ci-store")


@pytest.mark.timeout(30)
def test_keys_generate_then_show(cli: CliRunner, tmp_path: Path, monkeypatch) -> None:
    out = json.loads(invoke(cli, "keys", "generate", "--path", str(tmp_path / "k"), "--json"))
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600 and out["fingerprint"].startswith("SHA256:")
    invoke(cli, "keys", "generate", "--path", str(tmp_path / "k"), code=2)  # never overwritten
    monkeypatch.setenv("CELLCACHE_SIGNING_KEY", str(tmp_path / "k"))
    assert invoke(cli, "keys", "show").split()[0] == out["fingerprint"]
    assert "run code on" in invoke(cli, "keys", "--help")


@pytest.mark.timeout(30)
def test_keys_show_without_a_key_says_how_to_make_one(cli: CliRunner) -> None:
    assert "cellcache keys generate" in invoke(cli, "keys", "show", code=1)


@pytest.mark.timeout(60)
def test_push_uploads_what_is_missing_and_only_that(cli: CliRunner, ci_env: LocalStore) -> None:
    one = local_entry(ci_env, {"a": 1}, step="one")
    out = json.loads(invoke(cli, "push", "--json"))
    assert out["pushed"] == [one.key] and out["present"] == 0
    two = local_entry(ci_env, {"b": 2}, step="two")
    out = json.loads(invoke(cli, "push", "--step", "two", "--json"))
    assert out["pushed"] == [two.key] and out["present"] == 0
    out = json.loads(invoke(cli, "push", "--all", "--json"))
    assert out["pushed"] == [] and out["present"] == 2


@pytest.mark.timeout(30)
def test_push_without_a_signing_key_is_a_usage_error(cli: CliRunner, ci_env: LocalStore, monkeypatch) -> None:
    monkeypatch.delenv("CELLCACHE_SIGNING_KEY")
    local_entry(ci_env, {"a": 1})
    assert "cellcache keys generate" in invoke(cli, "push", code=2)


@pytest.mark.timeout(60)
def test_pull_prefetches_a_notebooks_steps(cli: CliRunner, ci_env: LocalStore, tmp_path: Path, monkeypatch) -> None:
    one = local_entry(ci_env, {"a": 1}, step="one", notebook="nb.ipynb")
    two = local_entry(ci_env, {"b": 2}, step="two", notebook="nb.ipynb")
    local_entry(ci_env, {"c": 3}, step="three", notebook="other.ipynb")
    invoke(cli, "push")
    monkeypatch.setenv("CELLCACHE_DIR", str(tmp_path / "laptop"))
    monkeypatch.delenv("CELLCACHE_SIGNING_KEY")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nb.ipynb").write_text("{}")
    out = json.loads(invoke(cli, "pull", "nb.ipynb", "--json"))
    assert sorted(out["pulled"]) == ["nb.ipynb:one", "nb.ipynb:two"] and out["missing"] == []
    laptop = LocalStore(tmp_path / "laptop")
    assert laptop.load(local_manifests(laptop, one.key)[0])["ns"] == {"a": 1}
    assert local_manifests(laptop, two.key)
    out = json.loads(invoke(cli, "pull", "--step", "nb.ipynb:one", "--json"))
    assert out["pulled"] == [] and out["already"] == 1


@pytest.mark.timeout(60)
def test_remote_status_reports_reachability_signing_and_counts(cli: CliRunner, ci_env: LocalStore, signer) -> None:
    local_entry(ci_env, {"a": 1})
    invoke(cli, "push")
    out = json.loads(invoke(cli, "remote", "status", "--json"))
    assert out["reachable"] and out["can_sign"] and out["fingerprint"] == signer.fingerprint
    assert (out["entries"], out["trusted_entries"], out["blobs"]) == (1, 1, 1)
    assert out["trusted_signers"] == [signer.fingerprint]
    text = invoke(cli, "remote", "status")
    assert "reachable: yes" in text and "entries: 1 (1 by trusted signers)" in text


@pytest.mark.timeout(30)
def test_remote_status_of_a_dead_remote_exits_1(cli: CliRunner, ci_env: LocalStore, monkeypatch) -> None:
    from .conftest import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    out = json.loads(invoke(cli, "remote", "status", "--json", code=1))
    assert out["reachable"] is False and out["error"]


@pytest.mark.timeout(60)
def test_remote_verify_finds_a_tampered_blob_and_repair_deletes_its_manifest(cli: CliRunner, ci_env: LocalStore, s3) -> None:
    local_entry(ci_env, {"a": "genuine"})
    local_entry(ci_env, {"b": "other"}, step="two")
    invoke(cli, "push")
    assert "all sound" in invoke(cli, "remote", "verify")
    objects = s3.objects("cellcache/v1/blobs/")
    name = next(n for n, data in objects.items() if b"genuine" in data)
    s3.client().put_object(Bucket=BUCKET, Key=name, Body=objects[name].replace(b"genuine", b"planted"))
    out = json.loads(invoke(cli, "remote", "verify", "--json", code=1))
    assert out["checked"] == 2 and len(out["broken"]) == 1 and "SHA-256" in out["broken"][0]["problem"]
    invoke(cli, "remote", "verify", "--repair")
    assert "all sound" in invoke(cli, "remote", "verify") and "checked 1 entry" in invoke(cli, "remote", "verify")
    assert json.loads(invoke(cli, "push", "--json"))["pushed"]  # the signer's next push heals it
    assert "checked 2 entries" in invoke(cli, "remote", "verify")


@pytest.mark.timeout(60)
def test_remote_gc_by_age_and_size(cli: CliRunner, ci_env: LocalStore, s3) -> None:
    local_entry(ci_env, {"a": 1})
    local_entry(ci_env, {"b": 2}, step="two")
    invoke(cli, "push")
    invoke(cli, "remote", "gc", code=2)
    assert json.loads(invoke(cli, "remote", "gc", "--older-than", "90d", "--json"))["entries"] == 0
    # issue 25: a bare number is refused, and emptying the shared store asks first; "no" keeps everything.
    invoke(cli, "remote", "gc", "--max-size", "0", code=2)
    declined = cli.invoke(main, ["remote", "gc", "--max-size", "0B"], input="n\n")
    assert declined.exit_code == 1 and "remote gc would delete 2 of 2 entries" in declined.output, declined.output
    assert len([n for n in s3.objects() if "/entries/" in n]) == 2
    out = json.loads(invoke(cli, "remote", "gc", "--max-size", "0B", "--yes", "--json"))
    assert (out["entries"], out["blobs"]) == (2, 2)
    assert not [n for n in s3.objects() if "/entries/" in n or "/blobs/" in n]


@pytest.mark.timeout(60)
def test_push_of_a_notebook_pushes_only_its_steps(cli: CliRunner, ci_env: LocalStore, tmp_path: Path, monkeypatch) -> None:
    project = tmp_path / "project"
    (project / "nbs").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[tool.cellcache]\n")
    (project / "nbs" / "a.ipynb").write_text("{}")
    monkeypatch.chdir(project)
    mine = local_entry(ci_env, {"a": 1}, step="one", notebook="nbs/a.ipynb")
    local_entry(ci_env, {"b": 2}, step="one", notebook="nbs/b.ipynb")
    out = json.loads(invoke(cli, "push", "nbs/a.ipynb", "--json"))
    assert out["pushed"] == [mine.key]
    invoke(cli, "push", "--all", "nbs/a.ipynb", code=2)
