"""`run_experiment`: one config -> corpus -> folds -> per fold the models trained (study.training)
and every listed method evaluated (study.evaluation) -> the report (study.report).

Resumable and safe: every stage leaves one artifact written atomically (a model part, a per-method
predictions file); a rerun skips what is there, so a killed run continues where it stopped and ends
with the same results.json. results.json holds no wall-clock figures for the same reason: timings go
to cost.json and the report.

Scale-out: under `accelerate launch`, evaluation shards the held-out dialogues across processes
(study.sharding); training stages run on the main process only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from convmem.eval.majority import METHOD as MAJORITY
from convmem.eval.majority import training_prior


@dataclass
class Stage:
    """Progress callback payload: which fold and stage the run is in."""

    fold: str
    stage: str
    index: int
    total: int


def run_experiment(cfg, out: str | Path | None = None, on_stage: Callable[[Stage], None] | None = None,
                   corpus_dir: Path | None = None, cache_dir: Path | None = None) -> Path:
    """Run (or resume) the study `cfg` in `out` (default cfg.out_dir). Returns the output folder.

    corpus_dir, cache_dir: where the generated synthetic corpus and the code cache live (default
    `out`/corpus and `out`/cache); studies of one corpus may share them (study/ablation.py)."""
    from convmem.parallel import dist_info
    from convmem.study.evaluation import evaluate_fold
    from convmem.study.folds import apply_threads, corpus_dialogues, fold_info, study_folds
    from convmem.study.methods import method_list
    from convmem.study.report import finish_report
    from convmem.study.run_folder import claim_run_folder
    from convmem.study.sharding import barrier
    from convmem.study.training import train_fold_models

    out = Path(out or cfg.out_dir)
    methods = method_list(cfg)
    rank, world = dist_info()
    if rank == 0:
        claim_run_folder(out, cfg)
    apply_threads(cfg)
    corpus_dir = Path(corpus_dir) if corpus_dir is not None else out / "corpus"
    cache_dir = Path(cache_dir) if cache_dir is not None else out / "cache"
    dialogues = corpus_dialogues(cfg, corpus_dir, rank)
    folds = study_folds(cfg, dialogues)
    stages_per_fold = 2 + len(methods)
    total = len(folds) * stages_per_fold + 1
    step = 0

    def stage(fold: str, name: str) -> None:
        nonlocal step
        step += 1
        if on_stage is not None and rank == 0:
            on_stage(Stage(fold, name, step, total))

    by_id = {d.dialogue_id: d for d in dialogues}
    for fold in folds:
        fdir = out / "folds" / fold.name
        train = [by_id[i] for i in fold.train_ids]
        test = [by_id[i] for i in fold.test_ids]
        if cfg.eval.speakers == "auto":
            from convmem.speakers.gold_turns import diarised_dialogues

            test = diarised_dialogues(test)
        stage(fold.name, "train models")
        if rank == 0:
            train_fold_models(cfg, train, fdir / "model", methods, cache_dir, fold_info=fold_info(fold, by_id))
        barrier(world)
        prior = training_prior(train, cfg.corpus.labels) if MAJORITY in methods else None
        evaluate_fold(cfg, fdir / "model", methods, test, fdir, fold.name, cache_dir, prior, rank, world,
                      on_method=lambda m, name=fold.name: stage(name, f"eval {m}"))
        stage(fold.name, "done")
    stage("all", "report")
    if rank == 0:
        finish_report(cfg, out, [f.name for f in folds], methods)
    barrier(world)  # every process returns once the report is there (the caller may read it)
    return out
