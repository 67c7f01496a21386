"""``rnnjit.train.load_run``: a trained model back from its run directory, for every task."""

import numpy as np
import pytest

from rnnjit.data import synthetic as syn
from rnnjit.train import TrainConfig, Trainer, load_run
from rnnjit.train.checkpoint import CheckpointError

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 30


def trained(tmp_path, **kw):
    out = str(tmp_path / kw["task"])
    config = TrainConfig(cell="gru", hidden=8, layers=1, batch=4, length=6, seq_len=8, steps=2, eval_every=0,
                         sample_every=0, threads=1, **kw)
    trainer = Trainer(config, out_dir=out)
    assert list(trainer.run())[-1].reason == "done"
    return out, trainer.model


@pytest.mark.parametrize("task", ["charlm", "adding", "copy", "captions", "dates"])
def test_every_task_loads_with_its_trained_parameters(tmp_path, task):
    extra = {}
    if task == "charlm":
        corpus = tmp_path / "corpus.txt"
        corpus.write_text(TEXT)
        extra = {"corpus": str(corpus), "dropout": 0.2}
    out, model = trained(tmp_path, task=task, **extra)
    if task == "charlm":
        (tmp_path / "corpus.txt").unlink()          # the vocabulary is in the checkpoint
    run = load_run(out)
    assert run.step == 2 and run.config.task == task and type(run.model) is type(model)
    saved, loaded = model.state_dict(), run.model.state_dict()
    assert saved.keys() == loaded.keys()
    for name in saved:
        np.testing.assert_array_equal(loaded[name], saved[name], err_msg=name)
    assert not any(layer.training for _, layer in run.model._layers())   # ready for inference
    if task == "charlm":
        from rnnjit.models import sample
        assert set(run.vocab.decode(run.vocab.encode("ROMEO"))) <= set(TEXT)
        assert len(sample(run.model, run.vocab, 10, prime="RO", rng=np.random.default_rng(0))) == 10
    elif task == "captions":
        assert run.vocab is syn.CAPTION_WORDS
    elif task == "dates":
        assert run.vocab is syn.ISO_CHARS
    else:
        assert run.vocab is None


def test_missing_or_foreign_runs_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no such run directory"):
        load_run(str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError) as e:
        load_run(str(tmp_path))                       # a directory without a checkpoint
    assert "\n" not in str(e.value)
