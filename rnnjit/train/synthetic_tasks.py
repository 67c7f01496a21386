"""The synthetic tasks: each one formulation of a recurrent network, trained by the same engine.

    adding    many-to-one regression      SequenceClassifier (MSE)      metric: mse vs baseline 1/6
    copy      many-to-many, delayed       CharLM over one-hot symbols   metric: accuracy of the recall
    captions  one-to-many                 ConditionedGenerator          metric: exact-match accuracy
    dates     encoder-decoder             Seq2Seq                       metric: exact-match accuracy

A task follows the interface of ``CharLMTask`` (``rnnjit.train.lm_task``): ``model``,
``tokens_per_step``, ``train_step()``, ``evaluate()``, ``sample()``, ``state()``/``load_state()``.
Training data is drawn fresh every step from a Generator seeded by ``--seed`` (its state is
saved in checkpoints, so a resumed run continues the same stream); the validation set is drawn
once from a separate stream (held-out dates for ``dates``). ``--length`` is T for adding and
copy; ``--seq-len``, ``--corpus`` and ``--dropout`` do not apply here.

Every ``eval`` event carries ``baseline``: the loss of the best answer that ignores the input's
content (always 1 for adding; blanks then a guess for copy; the grammar alone for captions and
dates). Beating it by far is what learning means here.

``--device cuda`` builds every model on the GPU (``device="cuda"``): parameters, gradients,
activations and optimizer state stay there; a step sends its batch and brings back the loss
(and the engine's gradient norms). Evaluation brings back the loss and the predicted ids (the
argmax runs on the device), from which the accuracies are counted on the host.
"""

from __future__ import annotations

import numpy as np

from ..data import synthetic as syn
from ..grad_mode import no_grad
from ..models import CharLM, ConditionedGenerator, Seq2Seq, SequenceClassifier
from ..models.module import host_ids, scalar
from .config import ConfigError, TrainConfig

EVAL_SIZE = 512     # validation examples, unless --eval-batches N asks for N batches


class SyntheticTask:
    name = ""

    def __init__(self, config: TrainConfig, vocab=None):
        self.config = config
        self.rng = np.random.default_rng([config.seed, 1])           # the training stream
        self.epoch = 0
        self.tokens_per_step = 0
        self.model = self.build_model()
        n = config.eval_batches * config.batch if config.eval_batches else EVAL_SIZE
        self.val = self.batch(np.random.default_rng([config.seed, 2]), n, "val")

    # a task defines these three
    def build_model(self):
        raise NotImplementedError

    def batch(self, rng, size, split):
        raise NotImplementedError

    def train_step(self) -> float:
        raise NotImplementedError

    def state(self):
        return {}, {"data_rng": self.rng.bit_generator.state}

    def load_state(self, arrays, meta):
        self.rng.bit_generator.state = meta["data_rng"]


class AddingTask(SyntheticTask):
    """The adding problem at T = --length: read 2 features per step, answer the marked sum."""
    name = "adding"

    def build_model(self):
        c = self.config
        if c.length < 2:
            raise ConfigError(f"--length must be >= 2 for the adding problem, got {c.length}")
        self.tokens_per_step = c.batch * c.length
        return SequenceClassifier(2, 1, c.hidden, c.layers, c.cell, loss="mse", dtype=c.np_dtype, seed=c.seed,
                                  device=c.device, cuda_graphs=c.cuda_graphs)

    def batch(self, rng, size, split="train"):
        return syn.adding(rng, size, self.config.length, self.config.np_dtype)

    def train_step(self):
        return self.model.forward_backward(*self.batch(self.rng, self.config.batch))

    def evaluate(self):
        mse = self.model.loss(*self.val)
        return mse, {"mse": mse, "baseline": syn.ADDING_BASELINE}

    def sample(self, temperature, rng, length=None):
        x, y = self.val
        b = int(rng.integers(len(y)))
        pred = float(self.model.predict(x[:, b:b + 1])[0, 0])
        a, c = x[x[:, b, 1] == 1, b, 0]
        return f"{a:.3f} + {c:.3f} = {y[b]:.3f}, predicted {pred:.3f} (error {pred - y[b]:+.3f})"


class CopyTask(SyntheticTask):
    """The copy task at T = --length: remember 10 symbols across T blanks, write them back."""
    name = "copy"

    def build_model(self):
        c = self.config
        cell, nl = ("rnn", "relu") if c.cell == "rnn-relu" else (c.cell, "tanh")
        self.tokens_per_step = c.batch * (c.length + 2 * syn.COPY_N)
        return CharLM(syn.COPY_VOCAB, c.hidden, c.layers, cell, input="onehot", dtype=c.np_dtype,
                      seed=c.seed, nonlinearity=nl, device=c.device, cuda_graphs=c.cuda_graphs)

    def batch(self, rng, size, split="train"):
        return syn.copy(rng, size, self.config.length)

    def train_step(self):
        x, y = self.batch(self.rng, self.config.batch)
        loss, _ = self.model.forward_backward(x, y, self.model.initial_state(x.shape[1]))
        return loss

    def _predict(self, x, y=None):
        """The argmax ids (T, B) on the host, and the mean cross-entropy against y (if given)."""
        m = self.model
        m.eval()
        with no_grad():
            z, _, _ = m.logits(x, m.initial_state(x.shape[1]))
        m.train()
        loss = None if y is None else scalar(m.k.cross_entropy(z, m._ids(y)))
        return host_ids(m.k.argmax_rows(z)).reshape(x.shape), loss

    def evaluate(self):
        x, y = self.val
        pred, loss = self._predict(x, y)
        recall = pred[-syn.COPY_N:] == y[-syn.COPY_N:]
        return loss, {"accuracy": float(recall.mean()), "exact": float(recall.all(axis=0).mean()),
                      "baseline": syn.copy_baseline(self.config.length)}

    def sample(self, temperature, rng, length=None):
        x, y = self.val
        b = int(rng.integers(y.shape[1]))
        got = self._predict(x[:, b:b + 1])[0][-syn.COPY_N:, 0]
        want = y[-syn.COPY_N:, b]
        return (" ".join(map(str, want)) + " -> " + " ".join(map(str, got))
                + (" ✓" if (got == want).all() else f"  ({int((got == want).sum())}/10)"))


class CaptionsTask(SyntheticTask):
    """Caption 16x16 images in words: the pixels set the initial state, the decoder writes."""
    name = "captions"
    words = syn.CAPTION_WORDS

    def build_model(self):
        c = self.config
        self.tokens_per_step = c.batch * 5
        return ConditionedGenerator(syn.IMAGE_SIZE ** 2 * 3, self.words.size, c.hidden, c.layers, c.cell,
                                    c.embedding or None, dtype=c.np_dtype, seed=c.seed, device=c.device,
                                    cuda_graphs=c.cuda_graphs)

    def batch(self, rng, size, split="train"):
        images, texts = syn.captions(rng, size)
        y = syn.pad_targets([self.words.encode(t.split()) for t in texts])
        return images.reshape(size, -1).astype(self.config.np_dtype), y, texts

    def train_step(self):
        v, y, _ = self.batch(self.rng, self.config.batch)
        self.tokens_per_step = y.size
        return self.model.forward_backward(v, y)

    def _captions(self, v):
        return [" ".join(self.words.decode(ids)) for ids in self.model.generate(v, max_len=8)]

    def evaluate(self):
        v, y, texts = self.val
        got = self._captions(v)
        return self.model.loss(v, y), {"accuracy": float(np.mean([g == t for g, t in zip(got, texts)])),
                                       "baseline": syn.CAPTIONS_BASELINE}

    def sample(self, temperature, rng, length=None):
        v, _, texts = self.val
        b = int(rng.integers(len(texts)))
        got = self._captions(v[b:b + 1])[0]
        return f"image of a {texts[b]} -> \"{got}\"" + (" ✓" if got == texts[b] else " ✗")


class DatesTask(SyntheticTask):
    """Translate human-written dates to ISO 8601, scored on days never seen in training."""
    name = "dates"
    src, tgt = syn.DATE_CHARS, syn.ISO_CHARS

    def build_model(self):
        c = self.config
        self.tokens_per_step = c.batch * 30
        return Seq2Seq(self.src.size, self.tgt.size, c.hidden, c.layers, c.cell, c.embedding or None,
                       dtype=c.np_dtype, seed=c.seed, device=c.device, cuda_graphs=c.cuda_graphs)

    def batch(self, rng, size, split="train"):
        pairs = syn.dates(rng, size, split)
        x = syn.pad_left([self.src.encode(h) for h, _ in pairs])
        y = syn.pad_targets([self.tgt.encode(iso) for _, iso in pairs])
        return x, y, pairs

    def train_step(self):
        x, y, _ = self.batch(self.rng, self.config.batch)
        self.tokens_per_step = x.size + y.size
        return self.model.forward_backward(x, y)

    def _translate(self, x):
        return ["".join(self.tgt.decode(ids)) for ids in self.model.translate(x, max_len=syn.ISO_LENGTH + 1)]

    def evaluate(self):
        x, y, pairs = self.val
        got = self._translate(x)
        return self.model.loss(x, y), {"accuracy": float(np.mean([g == iso for g, (_, iso) in zip(got, pairs)])),
                                       "baseline": syn.DATES_BASELINE}

    def sample(self, temperature, rng, length=None):
        x, _, pairs = self.val
        b = int(rng.integers(len(pairs)))
        human, iso = pairs[b]
        got = self._translate(syn.pad_left([self.src.encode(human)]))[0]
        return f"{human} -> {got}" + (" ✓" if got == iso else f" ✗ (expected {iso})")


SYNTHETIC_TASKS = {t.name: t for t in (AddingTask, CopyTask, CaptionsTask, DatesTask)}
