import json

import numpy as np
from matplotlib.image import imread

from convmem.eval.plots import PLOT_FILES, run_description, write_plots
from convmem.eval.results import ResultsConfig, build_results
from convmem.eval.stats import BootstrapConfig
from tests.eval.conftest import META, make_table

CONFIG = ResultsConfig(bootstrap=BootstrapConfig(n_resamples=50, seed=0))


def _results(**kw):
    return json.loads(json.dumps(build_results(make_table(n_dialogues=3, **kw), META, CONFIG)))


def test_every_figure_is_a_valid_png(tmp_path):
    written = write_plots(_results(), tmp_path)
    assert written == PLOT_FILES
    for rel in written.values():
        data = (tmp_path / rel).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        img = imread(tmp_path / rel)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
        assert np.ptp(img[..., :3]) > 0.5  # something was drawn, not a blank canvas
    assert not list(tmp_path.rglob("*.tmp"))


def test_write_loss_figure_only_when_losses_exist(tmp_path):
    (tmp_path / "plots").mkdir()
    stale = tmp_path / PLOT_FILES["write_loss_by_position"]
    stale.write_bytes(b"old")
    written = write_plots(_results(write_loss_methods=()), tmp_path)
    assert "write_loss_by_position" not in written and not stale.exists()
    assert set(written) == {"accuracy_vs_history", "per_class_f1", "confusion"}


def test_run_description_names_corpus_folds_seeds():
    assert run_description({"meta": META}) == "synthetic-test | folds f1,f2 | seeds 0 | n_limit 400"
