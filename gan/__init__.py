"""A TensorFlow 2 GAN for MNIST-like digits: a tested, resumable port of the original script."""

import os

from gan.files import cache_dir

__version__ = "0.1.0"


def _configure_tensorflow_env():
    """Environment TensorFlow reads once at import, so set before any `import tensorflow`.

    - TF_CPP_MIN_LOG_LEVEL=2: the C++ start-up chatter (CUDA probing, CPU features) buries
      the progress lines; a value the user set wins.
    - A persistent XLA compilation cache under cache_dir()/xla: the training loop's ~3-10 s
      compile happens once per machine instead of once per run. GAN_XLA_CACHE=0 turns it
      off; a cache directory already in TF_XLA_FLAGS wins.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    xla_flags = os.environ.get("TF_XLA_FLAGS", "")
    if os.environ.get("GAN_XLA_CACHE", "1") != "0" and "persistent_cache_directory" not in xla_flags:
        folder = os.path.join(cache_dir(), "xla")
        os.environ["TF_XLA_FLAGS"] = f"{xla_flags} --tf_xla_persistent_cache_directory={folder}".strip()


_configure_tensorflow_env()
