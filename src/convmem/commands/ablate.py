"""`convmem ablate CONFIG.yaml [key=value ...]`: one study config under several settings on the
same folds, pooled over further settings (e.g. corpus seeds), in one table (study/ablation.py).

Each cell is an ordinary resumable study under `<out>/cells/`; a killed ablation continues where it
stopped. Writes `<out>/<setting>/` (results.json, predictions.csv, report.md per setting) and
`<out>/ablation.md` / `ablation.json`.
"""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("ablate", help="run a study under several settings on the same folds and compare them "
                                      "(e.g. prosody marks off/on, two corpus seeds pooled)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="ablation YAML (see configs/ablation_synth.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides of the ablation config, e.g. bootstrap=200")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="run_overrides",
                   help="an override of the run config for every cell, after the ablation's own "
                        "(repeatable), e.g. --set 'folds.test_sessions=[S05]' --set threads=2")
    p.add_argument("--out", help="output folder (default: the config's `out`)")
    return p


def run(args) -> int:
    from pathlib import Path

    from convmem.study.ablation import load_ablation, run_ablation

    cfg, run_path = load_ablation(args.config, args.overrides)
    cfg.overrides = [*cfg.overrides, *args.run_overrides]

    def on_cell(i: int, n: int, cell) -> None:
        print(f"convmem ablate: cell {i + 1}/{n}: {cell.setting} × {cell.member}", flush=True)

    from convmem.output_folder import claim_output_folder

    out = Path(args.out or cfg.out_dir)
    # an ablation folder made before markers is known by its cells/ or ablation.json
    legacy = lambda o: (o / "cells").is_dir() or (o / "ablation.json").is_file()  # noqa: E731
    with claim_output_folder(out, "ablate", legacy=legacy):
        report = run_ablation(cfg, run_path, out, on_cell=on_cell)
    print(report.read_text())
    print(f"report: {report}")
    return 0
