"""SIGKILL a real `rnnjit train` at random moments and resume it: nothing is lost (tests/crashes.py)."""

from crashes import experiment


def test_killed_runs_resume_to_the_same_metrics(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind\n" * 60)
    stats = experiment(str(tmp_path), str(corpus), kills=6, steps=200, seed=1)
    assert stats["kills"] == 6 and stats["tracebacks"] == 0
    assert stats["rounds_identical_to_uninterrupted"] == stats["rounds"] >= 1
    assert stats["checkpoints_loaded"] + stats["no_checkpoint_yet"] == stats["kills"]
