"""The networks and losses a GAN is trained with, by name (registry: TensorFlow-free), and
sampling from a trained generator (inference)."""
