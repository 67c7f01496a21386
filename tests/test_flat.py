"""One buffer for all parameters (rnnjit/nn/flat.py): the views, and the one-call optimizer
against the per-parameter one."""

import numpy as np
import pytest

from rnnjit.models import CharLM
from rnnjit.models.classifier import SequenceClassifier
from rnnjit.models.generator import ConditionedGenerator
from rnnjit.models.seq2seq import Seq2Seq
from rnnjit.nn.arrays import NumpyArrays
from rnnjit.nn.flat import ALIGN, ParameterList, flatten
from rnnjit.nn.recurrent import LSTM
from rnnjit.train.optim import OPTIMIZERS, clip_gradients, gradients

MODELS = {
    "charlm": lambda seed: CharLM(11, 8, 2, "lstm", seed=seed, dtype=np.float64),
    "classifier": lambda seed: SequenceClassifier(3, 2, 6, 2, "gru", bidirectional=True, seed=seed,
                                                  dtype=np.float64),
    "generator": lambda seed: ConditionedGenerator(4, 9, 6, 1, "rnn", seed=seed, dtype=np.float64),
    "seq2seq": lambda seed: Seq2Seq(7, 8, 5, 2, "lstm", seed=seed, dtype=np.float64),
    "layer": lambda seed: LSTM(3, 5, num_layers=2, bidirectional=True, seed=seed, dtype=np.float64),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_parameter_is_a_view_of_the_buffer(kind):
    model = MODELS[kind](0)
    params = model.parameters()
    flat = params.flat
    assert isinstance(params, ParameterList) and flat is not None
    assert len(flat.slots) == len(params)
    offsets = [o for o, _ in flat.slots]
    assert offsets == sorted(offsets) and all(o % ALIGN == 0 for o in offsets)
    for i, (name, p, g) in enumerate(params):
        assert np.shares_memory(p, flat.params) and np.shares_memory(g, flat.grads), name
        assert flat.slots[i][1] == p.shape
        np.testing.assert_array_equal(flat.view(flat.params, i), p)
    # writing the buffer is writing the parameters: the gaps are all that is left
    flat.params[...] = 7.0
    assert all((p == 7.0).all() for _, p, _ in params)
    assert sum(p.size for _, p, _ in params) <= flat.params.size < sum(p.size + ALIGN for _, p, _ in params)


def test_flattening_keeps_the_values_the_seed_drew():
    """The same seed draws the same parameters as before flattening (state_dict is unchanged)."""
    a, b = MODELS["charlm"](3), MODELS["charlm"](3)
    sa = a.state_dict()
    flatten([b, b.rnn], NumpyArrays)   # a second flattening moves the values, never changes them
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, sa[k])


def test_a_layer_inside_a_model_gives_up_its_own_buffer():
    model = MODELS["charlm"](0)
    assert model.rnn.parameters().flat is None            # its arrays live in the model's buffer
    assert LSTM(3, 4).parameters().flat is not None      # a lone layer has one of its own


def test_mixed_dtypes_are_left_as_they_are():
    class Owner:
        def __init__(self, dtype):
            self._params = {"w": np.ones(3, dtype)}
            self._grads = {"w": np.zeros(3, dtype)}
    a, b = Owner(np.float32), Owner(np.float64)
    w = a._params["w"]
    assert flatten([a, b], NumpyArrays) is None
    assert a._params["w"] is w


def random_grads(params, rng):
    for _, _, g in params:
        g[...] = rng.standard_normal(g.shape)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("kind", ["charlm", "classifier", "layer"])
def test_one_call_update_equals_the_per_parameter_update(name, kind):
    """The flat path and the per-array path do the same arithmetic: equal bit for bit, step after
    step, state included; the gaps between parameters stay zero."""
    flat_model, plain_model = MODELS[kind](1), MODELS[kind](1)
    kw = {"momentum": 0.9} if name == "sgd" else {}
    flat_opt = OPTIMIZERS[name](flat_model.parameters(), lr=0.05, **kw)
    plain_opt = OPTIMIZERS[name](list(plain_model.parameters()), lr=0.05, **kw)   # a plain list
    assert flat_opt.flat is not None and plain_opt.flat is None
    for step in range(3):
        random_grads(flat_model.parameters(), np.random.default_rng(step))
        random_grads(plain_model.parameters(), np.random.default_rng(step))
        flat_opt.step()
        plain_opt.step()
    for (k, p, _), (_, q, _) in zip(flat_model.parameters(), plain_model.parameters()):
        np.testing.assert_array_equal(p, q, err_msg=k)
    fs, ps = flat_opt.state_dict(), plain_opt.state_dict()
    assert sorted(fs) == sorted(ps)
    for k in fs:
        np.testing.assert_array_equal(fs[k], ps[k], err_msg=k)
    flat = flat_model.parameters().flat
    used = np.zeros(flat.params.size, bool)
    for (offset, shape) in flat.slots:
        used[offset:offset + int(np.prod(shape))] = True
    assert (flat.params[~used] == 0).all()
    assert all((buf[~used] == 0).all() for buf in flat_opt._flat_state)


def test_flat_optimizer_state_loads_into_its_views():
    model = MODELS["layer"](2)
    opt = OPTIMIZERS["adam"](model.parameters(), lr=0.01)
    random_grads(model.parameters(), np.random.default_rng(0))
    opt.step()
    saved = opt.state_dict()
    other = OPTIMIZERS["adam"](MODELS["layer"](2).parameters(), lr=0.01)
    other.load_state_dict(saved)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, saved[k], err_msg=k)
    assert other.t == 1
    assert np.abs(other._flat_state[0]).sum() > 0     # the buffer itself, not a copy, was written


@pytest.mark.parametrize("mode,clip", [("norm", 0.5), ("value", 0.1)])
def test_clipping_the_buffer_equals_clipping_each_gradient(mode, clip):
    a, b = MODELS["seq2seq"](0), MODELS["seq2seq"](0)
    random_grads(a.parameters(), np.random.default_rng(5))
    random_grads(b.parameters(), np.random.default_rng(5))
    assert len(gradients(a.parameters())) == 1
    na, ca = clip_gradients(gradients(a.parameters()), clip, mode)
    nb, cb = clip_gradients([g for _, _, g in b.parameters()], clip, mode)
    assert ca and cb
    assert na == pytest.approx(nb, rel=1e-12)
    for (k, _, g), (_, _, h) in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(g, h, rtol=1e-12, err_msg=k)


def test_a_deep_copy_trains_its_own_arrays():
    """copy.deepcopy copies every view on its own, so a copy's parameters are no longer views of
    its buffer: its optimizer and clipping must then go array by array, and still train it."""
    import copy
    model = MODELS["classifier"](4)
    clone = copy.deepcopy(model)
    params = clone.parameters()
    assert params.flat is not None and len(gradients(params)) == len(params)
    opt = OPTIMIZERS["sgd"](params, lr=0.1)
    assert opt.flat is None
    random_grads(params, np.random.default_rng(0))
    before = {k: p.copy() for k, p, _ in params}
    opt.step()
    for k, p, g in clone.parameters():
        np.testing.assert_allclose(p, before[k] - 0.1 * g, err_msg=k)
    for (k, p, _), (_, q, _) in zip(model.parameters(), MODELS["classifier"](4).parameters()):
        np.testing.assert_array_equal(p, q, err_msg=k)     # the original is untouched
