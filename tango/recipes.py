"""Tiers built from declarative recipes: the ``[tier.NAME]`` tables of a TOML config
(configs/*.toml), run by `tango build`.

A recipe names what `tango train` gets (its options, as keys), then the exported forms and the
probe. Each step is one `tango` command in its own process, logged to
``$TANGO_HOME/logs/NAME[-FORM].log``; a step whose output is already there is skipped, and an
interrupted training resumes from its checkpoint, so a build is re-runnable. Steps run one at a
time: on a small machine two trainings only slow each other.

A config::

    data_root = "../../shared/data"      # data paths below are relative to it

    [rows.sst2-g30k]                     # shared keys, merged into a tier by `uses`
    train = "sst2/train.tsv"
    labels = "sst2"
    calibration_rows = 30000
    group_column = "containment"

    [tier.mpnet-base-sst2-g30k]
    uses = "sst2-g30k"
    model = "mpnet"                      # a registered name, an encoder alias or a path
    exports = ["openvino-int8"]          # onnx, onnx-int8, openvino, openvino-int8

Besides `tango train`'s options a tier takes ``model``, ``uses``, ``exports``, ``check_data``
(the exports' self-check rows, default: ``train``) and ``probe`` (probe each export on the
``train`` rows, default true). Paths may use ``${TANGO_HOME}`` and ``~``.

A table with ``early_exit = "MODE"`` (joint, weighted, sweet, two-stage) is a multi-exit model:
`tango early-exit train --mode MODE` gets its options (``exits`` and ``pooling`` besides the
rows and the loop's settings; a tier's own ``layers``, ``teacher``, ... are refused), and
``calibrate_dev`` (a labelled file) adds a step, `tango early-exit calibrate --dev`, fitting one
temperature per exit on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tango.modeldir import EARLY_EXIT_FILE, TRAIN_FILE
from tango.registry import tango_home

# an exported form: the suffix of its directory and name, and its `tango export` options
EXPORT_FORMS = {
    "onnx": ("-onnx", ["--format", "onnx"]),
    "onnx-int8": ("-int8", ["--format", "onnx", "--int8"]),
    "openvino": ("-ov", ["--format", "openvino"]),
    "openvino-int8": ("-ov-int8", ["--format", "openvino", "--int8"]),
}
PATH_KEYS = ("train", "dev", "unlabelled", "check_data", "calibrate_dev")
OWN_KEYS = ("model", "uses", "exports", "check_data", "probe", "early_exit", "calibrate_dev")
# training options a recipe may set (the command's own --out and --name come from the table):
# those `tango train` and `tango early-exit train` share, then each one's own
TRAIN_KEYS = (
    "train", "dev", "dev_fraction", "text_column", "pair_column", "label_column", "labels",
    "calibration_rows", "calibration_seed", "group_column", "train_rows", "epochs", "batch_size", "lr",
    "max_length", "seed", "max_steps", "bf16", "checkpoint_every",
)  # fmt: skip
TIER_KEYS = ("layers", "teacher", "unlabelled", "gatekeeper", "split_sentences", "unlabelled_rows")
EXIT_KEYS = ("exits", "pooling")
Log = Callable[[str], None]


@dataclass
class Step:
    """One `tango` command of a build, the file whose presence says it is done, and its log."""

    args: list[str]
    done_when: Path
    log: Path

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tango", *self.args]


@dataclass
class TierRecipe:
    """One ``[tier.NAME]`` table, its paths resolved."""

    name: str
    model: str
    train: dict[str, Any]
    exports: list[str] = field(default_factory=list)
    check_data: str | None = None
    probe: bool = True
    early_exit: str | None = None  # a multi-exit model's loss scheme; None: a tier
    calibrate_dev: str | None = None  # a multi-exit model's exits calibrated on this file

    def steps(self, home: Path) -> list[Step]:
        """The commands that build this tier into ``home/models``, in order."""
        out, logs = home / "models" / self.name, home / "logs"
        command = ["early-exit", "train", self.model, "--mode", self.early_exit] if self.early_exit else []
        train = [*(command or ["train", self.model]), *_options(self.train), "--out", str(out)]
        done = out / (EARLY_EXIT_FILE if self.early_exit else TRAIN_FILE)
        steps = [Step([*train, "--name", self.name], done, logs / f"{self.name}.log")]
        if self.calibrate_dev:
            calibrate = ["early-exit", "calibrate", str(out), "--dev", self.calibrate_dev]
            steps.append(Step(calibrate, out / "calibration", logs / f"{self.name}-calibrate.log"))
        for form in self.exports:
            suffix, options = EXPORT_FORMS[form]
            target = Path(f"{out}{suffix}")
            check = self.check_data or self.train["train"]
            export = ["export", str(out), *options, "--out", str(target), "--name", self.name + suffix]
            export += ["--check-data", check, "--no-probe"]
            log = logs / f"{self.name}{suffix}.log"
            steps.append(Step(export, target / "tango_export.json", log))
            if self.probe:
                probe = ["probe", str(target), "--data", self.train["train"]]
                steps.append(Step(probe, target / "tango_runtimes.json", log))
        return steps


def _options(values: dict[str, Any]) -> list[str]:
    """`tango train` options from a recipe's keys (lists repeat the option; booleans are flags)."""
    args: list[str] = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


def read_recipes(path: str | Path) -> dict[str, TierRecipe]:
    """Every ``[tier.NAME]`` of a config, in file order; a bad table is refused naming the file,
    the table and the key."""
    import tomllib

    path = Path(path)
    config = tomllib.loads(path.read_text())
    root = (path.parent / config.get("data_root", ".")).resolve()
    shared = config.get("rows", {})
    recipes = {}
    for name, table in config.get("tier", {}).items():
        where = f"{path}, [tier.{name}]"
        if "uses" in table and table["uses"] not in shared:
            raise ValueError(f"{where}: uses = {table['uses']!r}, but there is no [rows.{table['uses']}]")
        merged = {**shared.get(table.get("uses"), {}), **table}
        recipes[name] = _recipe(name, merged, root, where)
    return recipes


def _recipe(name: str, table: dict[str, Any], root: Path, where: str) -> TierRecipe:
    early = "early_exit" in table
    own = EXIT_KEYS if early else TIER_KEYS
    if early and (tier_only := sorted(set(table) & set(TIER_KEYS))):
        raise ValueError(f"{where}: {tier_only} train tiers (tango train), not early-exit models")
    if not early and (exit_only := sorted(set(table) & {*EXIT_KEYS, "calibrate_dev"})):
        raise ValueError(f"{where}: {exit_only} apply to early-exit models: set early_exit = MODE")
    if unknown := set(table) - set(TRAIN_KEYS) - set(own) - set(OWN_KEYS):
        command = "tango early-exit train" if early else "tango train"
        raise ValueError(f"{where}: {sorted(unknown)} not among {command}'s options or {list(OWN_KEYS)}")
    for key in ("model", "train"):
        if key not in table:
            raise ValueError(f"{where}: needs {key!r}")
    bad = [form for form in table.get("exports", []) if form not in EXPORT_FORMS]
    if bad:
        raise ValueError(f"{where}: exports {bad} are not among {list(EXPORT_FORMS)}")
    table = {k: _path(v, root) if k in PATH_KEYS else v for k, v in table.items()}
    return TierRecipe(
        name=name,
        model=str(table["model"]),
        train={k: v for k, v in table.items() if k in (*TRAIN_KEYS, *own)},
        exports=list(table.get("exports", [])),
        check_data=table.get("check_data"),
        probe=bool(table.get("probe", True)),
        early_exit=table.get("early_exit"),
        calibrate_dev=table.get("calibrate_dev"),
    )


def _path(value: Any, root: Path) -> Any:
    """A data path: ``${TANGO_HOME}`` and ``~`` expanded, relative ones under ``root``."""
    if isinstance(value, list):
        return [_path(v, root) for v in value]
    text = str(value).replace("${TANGO_HOME}", str(tango_home()))
    expanded = Path(os.path.expandvars(os.path.expanduser(text)))
    return str(expanded if expanded.is_absolute() else root / expanded)


def build(recipes: list[TierRecipe], *, dry_run: bool = False, log: Log = print) -> list[Step]:
    """Run the steps of each recipe that are not done yet, one at a time; the steps run."""
    home = tango_home()
    ran = []
    for recipe in recipes:
        for step in recipe.steps(home):
            shown = "tango " + " ".join(step.args)
            if step.done_when.exists():
                log(f"done   {shown}")
                continue
            log(f"{'would run' if dry_run else 'run'}    {shown}  (log: {step.log})")
            if not dry_run:
                _run(step)
            ran.append(step)
    return ran


def _run(step: Step) -> None:
    step.log.parent.mkdir(parents=True, exist_ok=True)
    # OpenMP threads that sleep when idle: spinning ones slow a training beside other work ~25%
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    with open(step.log, "a") as log:
        done = subprocess.run(step.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        tail = step.log.read_text().splitlines()[-5:]
        raise RuntimeError(
            f"tango {step.args[0]} failed ({done.returncode}); {step.log} ends:\n" + "\n".join(tail)
        )
