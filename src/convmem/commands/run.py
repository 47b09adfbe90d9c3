"""`convmem run CONFIG.yaml [key=value ...]`: run (or resume) a whole study."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("run", help="run or resume a study from a YAML config (corpus → folds → train → eval → report)",
                       description="Run (or resume) a study. A killed run continues where it stopped.")
    p.add_argument("config", help="YAML config (see configs/), or - for the defaults plus overrides")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. eval.methods=[none,dpm]")
    p.add_argument("--out", help="output folder (default: the config's `out`)")
    return p


def run(args) -> int:
    from convmem.config import load_config
    from convmem.run_config import RunConfig

    cfg = load_config(RunConfig, None if args.config == "-" else args.config, args.overrides)
    out = execute(cfg, args.out)
    print(out)
    return 0


def claim_study_folder(out, command: str):
    """The output rule (convmem/output_folder.py) for a study folder: `run` and `eval` continue each
    other's; one made before markers is known by its config.json. Which config may resume it is
    study/run_folder.py's to say."""
    from convmem.output_folder import claim_output_folder

    return claim_output_folder(out, command, kinds=("run", "eval"), legacy=lambda o: (o / "config.json").is_file())


def execute(cfg, out=None, command: str = "run"):
    """Run with one progress bar over the whole study; print the headline table at the end."""
    from pathlib import Path

    from tqdm import tqdm

    from convmem.study.experiment import run_experiment
    from convmem.study.report import headline

    bar = tqdm(total=1, desc="convmem run", unit="stage", dynamic_ncols=True)

    def on_stage(s) -> None:
        bar.total = s.total
        bar.set_description(f"[{s.fold}] {s.stage}")
        bar.update(s.index - bar.n)

    out = Path(out or cfg.out_dir)
    with claim_study_folder(out, command):
        try:
            run_experiment(cfg, out, on_stage=on_stage)
        finally:
            bar.close()
        if cfg.final:
            from convmem.study.final_model import train_final

            final = train_final(cfg, out)
            print(f"final model (all sessions): {final}")
    print(headline(Path(out)))
    print(f"report: {Path(out) / 'report.md'}")
    return Path(out)
