"""Bad input raises a one-line ValueError/TypeError naming the argument, never a Numba traceback."""

import numpy as np
import pytest

import rnnjit


def one_line(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


@pytest.fixture
def lstm():
    return rnnjit.LSTM(4, 6, num_layers=2, dtype=np.float32, seed=0)


def test_wrong_rank(lstm):
    with pytest.raises(ValueError) as e:
        lstm(np.zeros((2, 3, 4, 5), np.float32))
    assert "(2, 3, 4, 5)" in one_line(e)


def test_wrong_feature_size(lstm):
    with pytest.raises(ValueError) as e:
        lstm(np.zeros((5, 3, 7), np.float32))
    msg = one_line(e)
    assert "input_size=4" in msg and "7" in msg


def test_wrong_dtype(lstm):
    with pytest.raises(TypeError) as e:
        lstm(np.zeros((5, 3, 4), np.float64))
    assert "float64" in one_line(e) and "float32" in str(e.value)


def test_state_shape_mismatch(lstm):
    x = np.zeros((5, 3, 4), np.float32)
    with pytest.raises(ValueError) as e:
        lstm(x, (np.zeros((1, 3, 6), np.float32), np.zeros((2, 3, 6), np.float32)))
    msg = one_line(e)
    assert "h0" in msg and "(2, 3, 6)" in msg and "(1, 3, 6)" in msg
    with pytest.raises(ValueError) as e:
        lstm(x, np.zeros((2, 3, 6), np.float32))
    assert "(h0, c0)" in one_line(e)


def test_backward_before_forward(lstm):
    with pytest.raises(ValueError) as e:
        lstm.backward(np.zeros((5, 3, 6), np.float32))
    assert "before forward" in one_line(e)


def test_backward_shape(lstm):
    lstm(np.zeros((5, 3, 4), np.float32))
    with pytest.raises(ValueError) as e:
        lstm.backward(np.zeros((5, 3, 7), np.float32))
    assert "dout" in one_line(e) and "(5, 3, 6)" in str(e.value)


def test_load_state_dict_errors(lstm):
    sd = lstm.state_dict()
    missing = dict(sd)
    del missing["bias_hh_l1"]
    with pytest.raises(ValueError) as e:
        lstm.load_state_dict(missing)
    assert "missing" in one_line(e) and "bias_hh_l1" in str(e.value)
    with pytest.raises(ValueError) as e:
        lstm.load_state_dict({**sd, "weight_ih_l2": sd["weight_ih_l1"]})
    assert "unexpected" in one_line(e) and "weight_ih_l2" in str(e.value)
    bad = {**sd, "weight_hh_l0": np.zeros((24, 5), np.float32)}
    with pytest.raises(ValueError) as e:
        lstm.load_state_dict(bad)
    msg = one_line(e)
    assert "weight_hh_l0" in msg and "(24, 5)" in msg and "(24, 6)" in msg
    np.testing.assert_array_equal(lstm.state_dict()["weight_hh_l0"], sd["weight_hh_l0"])  # nothing half-loaded


@pytest.mark.parametrize("kwargs", [dict(hidden_size=0), dict(num_layers=-1), dict(dropout=1.5),
                                    dict(input_size=2.5)])
def test_bad_constructor_arguments(kwargs):
    args = dict(input_size=4, hidden_size=6) | kwargs
    with pytest.raises(ValueError) as e:
        rnnjit.GRU(**args)
    assert next(iter(kwargs)) in one_line(e)


def test_bad_nonlinearity_and_dtype():
    with pytest.raises(ValueError) as e:
        rnnjit.RNN(4, 6, nonlinearity="sigmoid")
    assert "nonlinearity" in one_line(e)
    with pytest.raises(TypeError) as e:
        rnnjit.RNN(4, 6, dtype=np.int32)
    assert "dtype" in one_line(e)
