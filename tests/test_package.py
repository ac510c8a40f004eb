"""The wheel ships every module and the package data, and that data resolves from any directory."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ("tango/resources/aliases.toml", "tango/resources/reviews.csv")
SAMPLE = "tango/resources/sst2_sample.tsv"  # shipped only where it was made (tango/resources/README.md)


def _backend_missing() -> str | None:
    if importlib.util.find_spec("setuptools") is None:  # --no-build-isolation: the backend must be here
        return "the build backend (setuptools) is not installed, so no wheel can be built offline"
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip wheel` builds offline from a copy of the source (no build/ left in the tree)."""
    if reason := _backend_missing():
        pytest.skip(reason)
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(ROOT / "tango", source / "tango", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation"]
    done = subprocess.run([*command, "-q", "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("tango-*.whl")
    return wheel


def test_wheel_holds_every_module_and_the_package_data(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tango").rglob("*.py")}
    assert modules - names == set(), "modules missing from the wheel"
    assert set(RESOURCES) - names == set(), "package data missing from the wheel"
    if (ROOT / SAMPLE).exists():
        assert SAMPLE in names


def test_resources_resolve_from_the_unpacked_wheel_in_another_directory(wheel: Path, tmp_path: Path):
    """Only the wheel's files on sys.path, run from an unrelated cwd: aliases and example are found."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import tango, tango.quickstart as q, tango.registry as r; from pathlib import Path; "
        "print(Path(tango.__file__).parent); print(sorted(r.aliases())); "
        "print(q.EXAMPLE.is_file(), q.EXAMPLE.read_text().splitlines()[0])"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    package, alias_names, example = done.stdout.splitlines()
    assert Path(package) == site / "tango", "the test imported tango from somewhere else"
    assert "distil" in alias_names and "large" in alias_names
    assert example == "True id,text"


def test_quickstart_paths_do_not_depend_on_the_working_directory(tmp_path: Path, monkeypatch):
    from tango import quickstart
    from tango.registry import aliases

    monkeypatch.chdir(tmp_path)
    assert quickstart.EXAMPLE.is_file()
    assert {"distil", "large"} <= set(aliases())
    train = quickstart.default_train_file()
    assert train.is_absolute()
    assert train == quickstart.SST2_TRAIN or train.name == "sst2_sample.tsv"


def test_quickstart_without_shared_data_fetches_sst2_from_the_hub_once(tmp_path, monkeypatch):
    """Away from ../shared, the quickstart's rows come from the hub (here: a stand-in parquet file)."""
    import huggingface_hub
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tango import quickstart

    asked = []

    def fake_download(repo_id, filename, repo_type):
        asked.append((repo_id, filename, repo_type))
        path = tmp_path / "hub" / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        texts = ["a\tgood\nfilm", "dull"] if "train" in filename else ["fine"]
        pq.write_table(
            pa.table({"sentence": texts, "label": list(range(len(texts))), "idx": [0] * len(texts)}), path
        )
        return str(path)

    monkeypatch.setattr(quickstart, "SST2_TRAIN", tmp_path / "absent" / "train.tsv")
    monkeypatch.setattr(quickstart, "SST2_SAMPLE", tmp_path / "absent" / "sample.tsv")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    train = quickstart.default_train_file(home=tmp_path / "home")
    assert train == tmp_path / "home" / "data" / "sst2" / "train.tsv"
    assert train.read_text() == "sentence\tlabel\na good film\t0\ndull\t1\n"  # tabs, newlines: spaces
    assert (train.parent / "dev.tsv").read_text() == "sentence\tlabel\nfine\t0\n"  # calibration rows
    assert [a[1] for a in asked] == [
        "sst2/train-00000-of-00001.parquet",
        "sst2/validation-00000-of-00001.parquet",
    ]
    quickstart.default_train_file(home=tmp_path / "home")
    assert len(asked) == 2  # kept: not fetched again


def test_quickstart_offline_without_shared_data_names_the_fix(tmp_path, monkeypatch):
    import huggingface_hub

    from tango import quickstart

    def offline(*args, **kwargs):
        raise OSError("we have no internet")

    monkeypatch.setattr(quickstart, "SST2_TRAIN", tmp_path / "absent" / "train.tsv")
    monkeypatch.setattr(quickstart, "SST2_SAMPLE", tmp_path / "absent" / "sample.tsv")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(FileNotFoundError, match="--train FILE"):
        quickstart.build_quick_cascade(log=lambda message: None, home=tmp_path)
    assert not (tmp_path / "data" / "sst2" / "train.tsv").exists()


def test_no_module_imports_the_package_itself():
    """Modules import names from their defining modules, never from the half-initialised tango/__init__."""
    import ast

    offenders = []
    for path in sorted((ROOT / "tango").rglob("*.py")):
        if path.name == "__init__.py" and path.parent.name == "tango":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "tango" and node.level == 0:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Import) and any(alias.name == "tango" for alias in node.names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


@pytest.mark.parametrize("module", sorted(p.name for p in (ROOT / "tango" / "cli").glob("*.py")))
def test_cli_functions_are_thin(module):
    """Every function in tango/cli/ is a shell: at most 40 lines of logic (docstrings, option
    declarations and comments do not count)."""
    import ast
    import io
    import tokenize

    source = (ROOT / "tango" / "cli" / module).read_text()
    skipped = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    code = {
        line
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type not in skipped
        for line in range(token.start[0], token.end[0] + 1)
    }
    too_long = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef) or node.name.endswith("_options"):  # option blocks
            continue
        body = node.body[1:] if ast.get_docstring(node) else node.body
        if not body:  # a group: its docstring only
            continue
        lines = {line for line in range(body[0].lineno, body[-1].end_lineno + 1) if line in code}
        if len(lines) > 40:
            too_long[node.name] = len(lines)
    assert not too_long, too_long
