import numpy as np

from gan.training import original


def test_original_loop_runs_and_freezes_d_in_the_combined_update():
    loop = original.OriginalLoop(seed=0)
    images = np.random.default_rng(0).uniform(0, 1, (100, 28, 28)).astype("float32")
    g0 = [w.copy() for w in loop.generator.get_weights()]
    d_loss, g_loss = loop.iteration(images)
    assert np.isfinite(d_loss) and np.isfinite(g_loss)
    assert any(not np.array_equal(a, b) for a, b in zip(g0, loop.generator.get_weights()))

    d_before = [w.copy() for w in loop.discriminator.get_weights()]
    loop.combined.train_on_batch(np.zeros((32, 100)), np.ones((32, 1)))
    assert all(np.array_equal(a, b) for a, b in zip(d_before, loop.discriminator.get_weights()))
