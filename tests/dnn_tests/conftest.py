"""Shared fixtures for the dnn tests.

The backend is fixed before anything imports keras: ``$KERAS_BACKEND`` if the
caller set it, else JAX. (The TensorFlow backend is exercised in a subprocess by
``test_train.py::test_tensorflow_backend_trains_in_subprocess``.) Models are
tiny (depth 8, width 4) and data sets a few hundred synthetic images, so the
whole directory runs in a few minutes on two CPU cores.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
# Quieter TensorFlow logs if TF is imported (e.g. by the subprocess test).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


def _tiny_config(**overrides):
    from dnn.convnet.train import TrainConfig

    kw = dict(batch_size=16, lr=0.1, epochs=3, depth=8, width=4, milestones=(1, 2), lr_decay=0.5, loss="kld",
              augment=True, seed=0, data="synthetic", n_train=512, n_test=256)
    kw.update(overrides)
    return TrainConfig(**kw)


@pytest.fixture
def tiny_config():
    """Factory ``tiny_config(**overrides) -> TrainConfig`` small enough for CPU tests."""
    return _tiny_config


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """One uninterrupted tiny run (3 epochs, LR halved after epochs 1 and 2); returns (config, run_dir, info)."""
    from dnn.convnet.train import train

    config = _tiny_config()
    run_dir = tmp_path_factory.mktemp("reference_run")
    info = train(config, run_dir, quiet=True)
    return config, run_dir, info


def pytest_configure(config):
    # Keras 3.15 converts variables with np.array(x) whose __array__ lacks copy=; numpy 2
    # warns on every such call. The warning is about keras internals, not our code.
    config.addinivalue_line(
        "filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning:keras.*")
