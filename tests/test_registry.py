"""One run's aliases resolve the same way: all from the hub, or all to local tiers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tango import registry
from tango.registry import register, resolve, resolve_all
from tango.tiers import load_tiers

TABLE = {
    "small": {"hub": "org/small", "local": ["small-local"]},
    "big": {"hub": "org/big", "local": ["big-local"]},
}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A fake hub: the ids in ``hub.up`` download (to a directory), others raise OSError."""

    class Hub:
        up: set[str] = set()
        asked: list[str] = []

    def snapshot(repo_id: str) -> Path:
        Hub.asked.append(repo_id)
        if repo_id not in Hub.up:
            raise OSError(f"cannot reach the hub for {repo_id}")
        path = tmp_path / "hub" / repo_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    monkeypatch.setenv("TANGO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TANGO_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(registry, "aliases", lambda: TABLE)
    monkeypatch.setattr(registry, "_hub_snapshot", snapshot)
    return Hub


def _register_local(tmp_path: Path, *names: str) -> dict[str, Path]:
    dirs = {}
    for name in names:
        dirs[name] = tmp_path / "local" / name
        dirs[name].mkdir(parents=True)
        register(name, dirs[name], role="tier")
    return dirs


def test_all_aliases_from_the_hub_when_it_has_them_all(hub, tmp_path):
    _register_local(tmp_path, "small-local", "big-local")
    hub.up = {"org/small", "org/big"}
    assert resolve_all(["small", "big"]) == [tmp_path / "hub/org/small", tmp_path / "hub/org/big"]


def test_one_alias_off_the_hub_sends_every_alias_local(hub, tmp_path):
    local = _register_local(tmp_path, "small-local", "big-local")
    hub.up = {"org/small"}  # tier 1 would come from the hub, tier 2 cannot
    assert resolve_all(["small", "big"]) == [local["small-local"], local["big-local"]]
    assert resolve("small") == tmp_path / "hub/org/small"  # alone, it still takes the hub


def test_an_alias_with_no_local_tier_fails_naming_the_rule(hub, tmp_path):
    _register_local(tmp_path, "big-local")
    hub.up = {"org/small"}
    with pytest.raises(ValueError) as error:
        resolve_all(["small", "big"])
    message = str(error.value)
    assert "cannot resolve model 'small'" in message and "'small-local' (not trained here)" in message
    assert (
        "all from the hub or all locally" in message and "local tiers registered here: big-local" in message
    )


def test_offline_goes_local_without_asking_the_hub(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("TANGO_OFFLINE", "1")
    local = _register_local(tmp_path, "small-local", "big-local")
    assert resolve_all(["small", "big"]) == [local["small-local"], local["big-local"]]
    assert hub.asked == []


def test_directories_and_registered_names_are_not_aliases(hub, tmp_path):
    local = _register_local(tmp_path, "small-local", "big-local")
    hub.up = {"org/big"}
    directory = tmp_path / "some-dir"
    directory.mkdir()
    assert resolve_all([directory, "big"]) == [directory, tmp_path / "hub/org/big"]
    assert resolve_all(["small-local", "big"]) == [local["small-local"], tmp_path / "hub/org/big"]


def test_load_tiers_resolves_together_and_keeps_the_given_names(hub, tmp_path, tiny_model_dir):
    register("small-local", tiny_model_dir, role="tier")
    register("big-local", tiny_model_dir, role="tier")
    hub.up = {"org/small"}  # a directory without a model: loading it would fail
    tiers = load_tiers(["small", "big"], runtime="torch")
    assert [t.path for t in tiers] == [tiny_model_dir, tiny_model_dir]
    assert [t.source for t in tiers] == ["small", "big"]
    assert load_tiers([tiers[0]])[0] is tiers[0]


def test_forget_drops_named_and_missing_entries_and_keeps_directories(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tango.cli import cli

    monkeypatch.setenv("TANGO_HOME", str(tmp_path / "home"))
    dirs = _register_local(tmp_path, "kept", "named", "gone")
    dirs["gone"].rmdir()
    listed = CliRunner().invoke(cli, ["models", "list"]).output
    marked = {line.split()[0]: line.endswith("(missing)") for line in listed.splitlines()}
    assert marked == {"gone": True, "kept": False, "named": False}

    refused = CliRunner().invoke(cli, ["models", "forget", "named", "nosuch"])
    assert refused.exit_code == 1 and "not registered: nosuch" in refused.output
    assert set(registry.registered()) == {"kept", "named", "gone"}  # a refused call changes nothing
    assert CliRunner().invoke(cli, ["models", "forget"]).exit_code == 2

    result = CliRunner().invoke(cli, ["models", "forget", "named", "--missing"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["forgot gone", "forgot named"]
    assert set(registry.registered()) == {"kept"}
    assert dirs["named"].is_dir()  # the registry forgets; the directory stays
    assert CliRunner().invoke(cli, ["models", "forget", "--missing"]).output == "nothing to forget\n"


def test_an_entry_without_a_path_lists_as_missing_and_is_forgotten(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from tango.cli import cli

    monkeypatch.setenv("TANGO_HOME", str(tmp_path / "home"))
    _register_local(tmp_path, "kept")
    entries = registry.registered() | {"hand-edited": {"role": "tier"}}
    (tmp_path / "home" / "registry.json").write_text(json.dumps(entries))
    listed = CliRunner().invoke(cli, ["models", "list"])
    assert listed.exit_code == 0 and "hand-edited" in listed.output and "(missing)" in listed.output
    with pytest.raises(TypeError, match="not one string"):
        registry.forget("kept")
    with pytest.raises(KeyError, match="not registered: nosuch \\("):  # named once, however often asked
        registry.forget(["nosuch", "nosuch"])
    assert registry.forget(missing=True) == ["hand-edited"]
    assert set(registry.registered()) == {"kept"}
