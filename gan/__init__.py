"""A TensorFlow 2 GAN for MNIST-like digits: a tested, resumable port of the original script."""

import os

__version__ = "0.1.0"

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) buries the progress lines;
# read once at TensorFlow's import, so set here; a value the user set wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
