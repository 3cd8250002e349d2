import pytest

from reskeras import require_tensorflow_backend


def test_tensorflow_backend_is_accepted():
    require_tensorflow_backend()  # raises on failure
    assert require_tensorflow_backend("tensorflow") is None


@pytest.mark.parametrize("backend", ["jax", "torch", "numpy"])
def test_other_backends_are_refused_with_the_fix(backend):
    with pytest.raises(ImportError, match=rf"set KERAS_BACKEND=tensorflow .* "
                                          rf"Received: backend='{backend}'"):
        require_tensorflow_backend(backend)
