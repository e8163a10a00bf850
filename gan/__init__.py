"""A TensorFlow 2 GAN for MNIST-like digits: a tested, resumable port of the original script."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) buries the progress lines;
# an explicit TF_CPP_MIN_LOG_LEVEL from the user still wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
