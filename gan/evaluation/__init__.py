"""Judging generated images: one evaluate for every dataset (evaluator), the metrics, and the
classifiers whose features they are computed on."""
