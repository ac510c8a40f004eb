"""`tango run`'s work: scoring a file on either engine, and a model's accuracy on labelled rows."""

from __future__ import annotations

from typing import Any

from tango.data import LabelledData


def score(
    model: Any,
    input_path: str,
    output_path: str,
    *,
    engine: str = "local",
    progress: bool = True,
    **options: Any,
) -> Any:
    """Score ``input_path`` into ``output_path`` with the local engine
    (:func:`tango.engines.local.score_file`) or, ``engine="ray"``, on Ray Data
    (:func:`tango.engines.ray.score`). ``options``: ``text_column``, ``pair_column``,
    ``id_column``, ``input_format``, ``on_error`` ("write"), ``errors_path``, ``probabilities``,
    ``resume``, ``overwrite``; the local engine's ``chunk_size``; the Ray engine's address, merge,
    output_format, read_cpus, fuse_tiers and each stage's ``tierN_actors``/``_cpus``/``_batch``/
    ``_min_actors``."""
    common = {"progress": progress}
    for key, (name, default) in SHARED.items():
        common[name] = options.pop(key, default)
    errors_path = common.pop("errors_path")
    if engine == "ray":
        from tango.engines.ray import Stage
        from tango.engines.ray import score as score_on_ray

        for stage, names in STAGE_OPTIONS.items():
            options[stage] = Stage(*(options.pop(name) for name in names))
        options.pop("chunk_size", None)  # the CLI refuses it with --engine ray; Ray batches by stage
        return score_on_ray(model, input_path, output_path, errors_dir=errors_path, **common, **options)
    if engine != "local":
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    from tango.engines.local import score_file

    common["text_column"] = common["text_column"] or "text"
    chunk_size = options.pop("chunk_size", None)
    if set(options) - RAY_DEFAULTS_IGNORED:
        raise ValueError(f"the local engine takes no {sorted(set(options) - RAY_DEFAULTS_IGNORED)}")
    return score_file(
        model, input_path, output_path, errors_path=errors_path, chunk_size=chunk_size, **common
    )


# each Ray pool's options, by stage
STAGE_OPTIONS = {
    stage: tuple(f"{stage}_{part}" for part in ("actors", "cpus", "batch", "min_actors"))
    for stage in ("tier1", "tier2")
}
# the Ray engine's options, which the CLI always passes (their defaults; it refuses them set with
# the local engine), so the local engine leaves them aside
RAY_ONLY = (
    "address",
    "merge",
    "output_format",
    "read_cpus",
    "fuse_tiers",
    *STAGE_OPTIONS["tier1"],
    *STAGE_OPTIONS["tier2"],
)
RAY_DEFAULTS_IGNORED = set(RAY_ONLY)


# the options both engines take: this job's name -> (the engines' name, its default)
SHARED: dict[str, tuple[str, Any]] = {
    "text_column": ("text_column", None),
    "pair_column": ("text_pair_column", None),
    "id_column": ("id_column", None),
    "input_format": ("format", None),
    "errors_path": ("errors_path", None),
    "on_error": ("on_error", "write"),
    "probabilities": ("probabilities", False),
    "resume": ("resume", False),
    "overwrite": ("overwrite", False),
}


def evaluate(cascade: Any, test: Any) -> dict[str, float]:
    """Accuracy, escalation and wall-clock of the cascade on held-out labelled rows."""
    import time

    from tango.gate_report import check_held_out
    from tango.tuning import align_labels

    check_held_out(getattr(cascade, "calibration_", None), test)
    labels = align_labels(test, list(cascade.classes_))
    start = time.perf_counter()
    result = cascade.predict_detailed(test.texts)
    seconds = time.perf_counter() - start
    return {
        "rows": len(test),
        "accuracy": float((result.probabilities.argmax(1) == labels).mean()),
        "escalated": result.stats.escalated[0] if result.stats.escalated else 0.0,
        "rows_per_s": len(test) / seconds if seconds else 0.0,
    }


def last_tier_accuracy(cascade: Any, data: LabelledData) -> float:
    """The last tier's own accuracy on labelled rows (what the drop is measured against)."""
    from tango.tuning import align_labels

    last = cascade._validated()[0][-1]
    return float(
        (last.predict_proba(data.texts).argmax(axis=1) == align_labels(data, list(cascade.classes_))).mean()
    )
