"""Other libraries' output is hidden by the `tango` command unless -v, and put back afterwards."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tango.cli import cli
from tango.quiet import quiet_libraries

NOISE = ("LOAD REPORT", "MISSING", "Loading weights")


@pytest.fixture(scope="module")
def encoder_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny classifier's encoder without its head: loading it as a classifier makes a LOAD REPORT."""
    from transformers import AutoConfig, BertModel

    out = tmp_path_factory.mktemp("tiny_encoder")
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    BertModel(AutoConfig.from_pretrained(tiny_model_dir)).save_pretrained(out)
    return out


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _run(args: list[str], tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> str:
    """Everything the command printed: click's streams, the real ones, and transformers' log.

    transformers' own handler writes to whatever stderr was when it was first set up, and its
    logger does not propagate: a handler on it sees what reaches that stream.
    """
    rows = tmp_path / "in.csv"
    rows.write_text("id,text\n1,a good film\n2,a bad movie\n")
    out = tmp_path / "out.jsonl"
    hf_log, collect = logging.getLogger("transformers"), _Collect()
    hf_log.addHandler(collect)
    try:
        result = CliRunner().invoke(cli, [*args, "-i", str(rows), "-o", str(out), "--overwrite"])
    finally:
        hf_log.removeHandler(collect)
    assert result.exit_code == 0, result.output
    captured = capfd.readouterr()
    return "\n".join([result.output, captured.out, captured.err, *collect.messages])


def _tiers(encoder_dir: Path, tiny_model_dir: Path) -> list[str]:
    return ["--tier1", str(encoder_dir), "--tier2", str(tiny_model_dir), "--runtime", "torch"]


def test_cli_hides_transformers_load_report_and_bars(encoder_dir, tiny_model_dir, tmp_path, capfd):
    output = _run(["run", *_tiers(encoder_dir, tiny_model_dir)], tmp_path, capfd)
    assert "rows in: 2" in output  # tango's own summary stays
    for noise in NOISE:
        assert noise not in output


def test_verbose_shows_them(encoder_dir, tiny_model_dir, tmp_path, capfd):
    output = _run(["-v", "run", *_tiers(encoder_dir, tiny_model_dir)], tmp_path, capfd)
    assert "Loading weights" in output
    assert "LOAD REPORT" in output


def test_cli_puts_library_settings_back(encoder_dir, tiny_model_dir, tmp_path, capfd):
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    before = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
    bars = hub_utils.are_progress_bars_disabled()
    _run(["run", *_tiers(encoder_dir, tiny_model_dir)], tmp_path, capfd)
    assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == before
    assert hub_utils.are_progress_bars_disabled() == bars


def test_loading_a_tier_changes_no_library_setting(tiny_model_dir):
    """The rule the CLI-level quieting replaces: constructors set no global state."""
    from transformers.utils import logging as hf_logging

    from tango.tiers import Tier

    hf_logging.enable_progress_bar()
    Tier.from_pretrained(tiny_model_dir, runtime="torch")
    assert hf_logging.is_progress_bar_enabled()


def test_root_logger_notes_of_onnxruntime_quantization_are_dropped():
    """onnxruntime.quantization logs "Please consider to run pre-processing" on the root logger."""

    def note(path: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.makeLogRecord({"msg": f"note from {path}", "levelno": level, "pathname": path})

    root, handler = logging.getLogger(), _Collect()
    root.addHandler(handler)
    try:
        with quiet_libraries():
            root.handle(note("/site-packages/onnxruntime/quantization/quantize.py"))
            root.handle(note("/site-packages/onnxruntime/quantization/quantize.py", logging.ERROR))
            root.handle(note("/work/tango/scoring.py"))
        root.handle(note("/site-packages/onnxruntime/quantization/quantize.py"))
    finally:
        root.removeHandler(handler)
    assert handler.messages == [
        "note from /site-packages/onnxruntime/quantization/quantize.py",  # errors still show
        "note from /work/tango/scoring.py",
        "note from /site-packages/onnxruntime/quantization/quantize.py",  # after the block
    ]


def test_torch_onnx_export_warnings_are_hidden_inside_only(tiny_model_dir, tmp_path):
    import warnings

    from tango.export import export_tier

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_libraries():
            export_tier(tiny_model_dir, tmp_path / "onnx")
            warnings.warn("tango's own warning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["tango's own warning"]


def test_hub_retry_notes_stay_hidden_when_the_hub_resets_its_own_level(caplog):
    """A hub download sets huggingface_hub's logger back to WARNING; its retry notes still stay out."""
    import logging

    from tango.quiet import quiet_libraries

    caplog.set_level(logging.DEBUG)
    hub = logging.getLogger("huggingface_hub")
    before = hub.level
    with quiet_libraries():
        hub.setLevel(logging.WARNING)  # what huggingface_hub does during hf_hub_download
        logging.getLogger("huggingface_hub.utils._http").warning("'no network' thrown while requesting HEAD")
        logging.getLogger("tango.quickstart").warning("tango's own warning")
    hub.setLevel(before)
    messages = [record.getMessage() for record in caplog.records]
    assert not [m for m in messages if "thrown while requesting" in m]
    assert "tango's own warning" in messages
    logging.getLogger("huggingface_hub.utils._http").warning("'no network' thrown while requesting HEAD")
    assert any("thrown while requesting" in record.getMessage() for record in caplog.records)  # restored


def test_a_ray_started_inside_logs_no_info(tmp_path):
    """Ray reads its logger level, and Ray Data its own, when imported and started: inside the
    quiet block (where a Ray run imports and starts them) neither logs start-up, plans or
    progress at INFO; outside, the environment is as it was."""
    pytest.importorskip("ray.data")
    script = (
        "import logging, os\n"
        "from tango.quiet import quiet_libraries\n"
        "with quiet_libraries():\n"
        "    import ray, ray.data\n"
        "    ray.init(num_cpus=1, include_dashboard=False)\n"
        "    print(logging.getLogger('ray.data').level, flush=True)\n"
        "    ray.shutdown()\n"
        "print(os.environ.get('RAY_DATA_LOG_LEVEL'), os.environ.get('RAY_LOGGER_LEVEL'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180
    )
    assert done.returncode == 0, done.stderr
    data_level, after = done.stdout.splitlines()[-2:]
    assert int(data_level) >= logging.WARNING and after == "None None"
    assert "Started a local Ray instance" not in done.stderr and " INFO " not in done.stderr
