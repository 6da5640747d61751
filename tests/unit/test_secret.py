import json
import pickle

import pytest

from cgwd.secret import Secret


def test_secret_never_renders() -> None:
    s = Secret("sVbYmmbuv_1I4wJ2RvidkZboWOfs.8FW")
    for rendered in (repr(s), str(s), f"{s}", f"{s!r}", "{}".format(s)):  # noqa: UP032
        assert "sVbY" not in rendered
        assert "redacted" in rendered
    assert "sVbY" not in json.dumps({"k": str(s)})


def test_secret_reveal_and_compare() -> None:
    assert Secret("abc").reveal() == b"abc"
    assert Secret(b"abc") == Secret("abc")
    assert Secret("abc") != Secret("abd")
    assert len(Secret("abcd")) == 4


def test_secret_refuses_pickle_and_hash() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Secret("x"))
    with pytest.raises(TypeError):
        hash(Secret("x"))
