"""The synthetic task generators: targets right, seeded, baselines right."""

import datetime as dt
import math

import numpy as np
import pytest

from rnnjit.data import synthetic as syn


def rng(seed=0):
    return np.random.default_rng(seed)


def test_adding_targets_and_markers():
    x, y = syn.adding(rng(), 64, 21)
    assert x.shape == (21, 64, 2) and y.shape == (64,) and x.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert np.all((values >= 0) & (values < 1))
    assert np.all(markers.sum(axis=0) == 2)
    assert np.all(markers[:10].sum(axis=0) == 1) and np.all(markers[10:].sum(axis=0) == 1)   # one per half
    np.testing.assert_allclose(y, (values * markers).sum(axis=0), rtol=1e-6)


def test_adding_is_seeded():
    a, b, c = syn.adding(rng(1), 8, 10), syn.adding(rng(1), 8, 10), syn.adding(rng(2), 8, 10)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    with pytest.raises(ValueError):
        syn.adding(rng(), 2, 1)


def test_adding_baseline_is_one_sixth():
    assert syn.ADDING_BASELINE == pytest.approx(1 / 6)
    _, y = syn.adding(rng(3), 200_000, 4, np.float64)
    assert np.mean(y) == pytest.approx(1.0, abs=0.005)
    assert np.mean((y - 1.0) ** 2) == pytest.approx(1 / 6, abs=0.003)     # always answering 1


@pytest.mark.parametrize("T", [1, 7, 100])
def test_copy_layout(T):
    x, y = syn.copy(rng(), 16, T)
    assert x.shape == y.shape == (T + 20, 16)
    assert np.all((x[:10] >= 1) & (x[:10] <= 8))                 # 10 symbols of 8
    assert np.all(x[10:T + 9] == syn.COPY_BLANK)                  # T - 1 blanks
    assert np.all(x[T + 9] == syn.COPY_DELIMITER)
    assert np.all(x[T + 10:] == syn.COPY_BLANK)
    assert np.all(y[:T + 10] == syn.COPY_BLANK)
    assert np.array_equal(y[T + 10:], x[:10])                     # written back at the end
    assert np.array_equal(syn.copy(rng(4), 3, T)[0], syn.copy(rng(4), 3, T)[0])


def test_copy_baseline():
    T = 100
    assert syn.copy_baseline(T) == pytest.approx(10 * math.log(8) / (T + 20))
    # The memoryless answer: blank with certainty, then 1/8 for each symbol; its cross-entropy.
    _, y = syn.copy(rng(), 50, T)
    p = np.where(y == syn.COPY_BLANK, 1.0, 1 / 8)
    assert -np.mean(np.log(p)) == pytest.approx(syn.copy_baseline(T))


def test_captions_render_what_they_say():
    r = rng(5)
    for colour in syn.COLOURS:
        for shape in syn.SHAPES:
            for row in range(3):
                for col in range(3):
                    img = syn.render(colour, shape, row, col, r)
                    assert img.shape == (16, 16, 3) and img.dtype == np.float32
                    bright = img.max(axis=2) > 0.5
                    assert bright.sum() == syn.SHAPE_MASKS[shape].sum()
                    rr, cc = np.nonzero(bright)
                    box = ((rr.min() + rr.max()) / 2, (cc.min() + cc.max()) / 2)               # jitter of 1 at most
                    assert abs(box[0] - syn._CENTRES[row]) <= 1 and abs(box[1] - syn._CENTRES[col]) <= 1
                    hue = img[rr, cc].mean(axis=0)
                    assert np.argmax(hue) == np.argmax(syn.COLOURS[colour])
    assert syn.caption_of("red", "square", 0, 0) == "red square top left"
    assert syn.caption_of("blue", "cross", 1, 1) == "blue cross centre"
    assert syn.caption_of("green", "circle", 2, 1) == "green circle bottom"


def test_captions_batch_seeded_and_in_vocabulary():
    a_img, a_txt = syn.captions(rng(6), 20)
    b_img, b_txt = syn.captions(rng(6), 20)
    assert np.array_equal(a_img, b_img) and a_txt == b_txt
    for t in a_txt:
        syn.CAPTION_WORDS.encode(t.split())


def test_captions_baseline():
    caps = [syn.caption_of(c, s, r, k) for c in syn.COLOURS for s in syn.SHAPES for r in range(3) for k in range(3)]
    assert len(set(caps)) == syn.N_CAPTIONS == 144
    mean_tokens = np.mean([len(c.split()) + 1 for c in caps])       # words and <eos>
    assert syn.CAPTIONS_BASELINE == pytest.approx(math.log(144) / mean_tokens)


_PARSE = ["%d %B %Y", "%d %b %Y", "%B %d, %Y", "%b %d, %Y", "%d.%m.%Y", "%m/%d/%Y", "%A, %d %B %Y", None,
          "%d %b %Y", "%Y/%m/%d"]


def test_dates_targets_are_the_dates_written():
    assert len(_PARSE) == len(syn.DATE_FORMATS)
    day = dt.date(2026, 11, 25)
    for fmt, parse in zip(syn.DATE_FORMATS, _PARSE):
        text = fmt(day)
        if parse is None:
            assert text == "the 25th of November 2026"
        else:
            assert dt.datetime.strptime(text.title() if text.isupper() else text, parse).date() == day
    for human, iso in syn.dates(rng(7), 300):
        d = dt.date.fromisoformat(iso)
        assert str(d.year) in human and str(d.day) in human
        syn.DATE_CHARS.encode(human)
        syn.ISO_CHARS.encode(iso)


def test_dates_held_out_split_and_seed():
    train = syn.dates(rng(8), 400, "train")
    val = syn.dates(rng(8), 400, "val")
    assert not any(syn.held_out(dt.date.fromisoformat(iso)) for _, iso in train)
    assert all(syn.held_out(dt.date.fromisoformat(iso)) for _, iso in val)
    assert syn.dates(rng(9), 5) == syn.dates(rng(9), 5)
    share = np.mean([syn.held_out(syn.FIRST_DAY + dt.timedelta(days=i)) for i in range(syn.N_DAYS)])
    assert 0.08 < share < 0.12
    assert syn.DATES_BASELINE == pytest.approx(math.log(36525) / 11)


def test_padding():
    y = syn.pad_targets([[5, 6], [7]])
    assert y.T.tolist() == [[5, 6, syn.EOS], [7, syn.EOS, syn.PAD]]
    x = syn.pad_left([[5, 6], [7]])
    assert x.T.tolist() == [[5, 6], [syn.PAD, 7]]


def test_tokens_refuse_unknown_symbols_and_ids_in_one_line():
    words = syn.CAPTION_WORDS
    assert words.decode(words.encode(["red", "square"])) == ["red", "square"]
    with pytest.raises(ValueError, match=r"^'purple' is not one of the \d+ symbols this task knows$"):
        words.encode(["red", "purple"])
    for bad in (-1, words.size, 2.0, True):      # -1 used to name the last symbol
        with pytest.raises(ValueError, match=rf"^id {bad!r} is not a symbol's id: ids are integers in \[0, {words.size}\)$"):
            words.decode([3, bad])
