"""Every loss's update is pinned, not only its reported value: after one D update and one G
update, the change of each network's weights is minus the gradient of that loss computed
here, by hand, with plain TensorFlow ops on the same weights, inputs and random draws.

The state's Adams are replaced by SGD with learning rate 1, so a weight's change is exactly
minus the gradient the optimizer received (Adam's first step, lr * g / (|g| + eps), would
keep only the gradient's sign). A penalty that is reported but left out of the gradient (or
weighted wrongly) moves the weights elsewhere: each case checks its penalty's share of the
gradient is large enough to show.

Shapes: B = 8 images [B, 28, 28], noise [B, Z], labels int32 [B]; with --pack=k D sees
packs [B/k, 28, 28, k] and labels [B/k, k]; D outputs [B/k, 1].
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan import config as config_lib
from gan.training import step as step_lib

B, Z = 8, 100
GP_WEIGHT, R1, R2 = 3.0, 2.0, 5.0  # not the defaults, and R1 != R2: a swap would show
AUX = 0.7  # --aux_classifier: not 1, so a weight left out would show

CASES = {
    "bce": dict(loss="bce"),
    "hinge": dict(loss="hinge"),
    "wgan-gp": dict(loss="wgan-gp", gp_weight=GP_WEIGHT),
    "rpgan": dict(loss="rpgan", r1=R1, r2=R2),
    "rpgan-pack2-conditional": dict(loss="rpgan", r1=R1, r2=R2, pack=2, conditional=True),
    "wgan-gp-conditional": dict(loss="wgan-gp", gp_weight=GP_WEIGHT, conditional=True),
    "bce-auxiliary-classifier": dict(loss="bce", conditional=True, aux_classifier=AUX),
    "rpgan-auxiliary-classifier": dict(loss="rpgan", r1=R1, r2=R2, conditional=True,
                                       aux_classifier=AUX),
}


def inputs(seed=0):
    """Real images [B, 28, 28] in [0, 1], their labels [B], D's and G's noise [B, Z], G's
    labels [B] and WGAN-GP's interpolation weights [B, 1, 1]."""
    rng = np.random.default_rng(seed)
    return dict(real=tf.constant(rng.uniform(0, 1, (B, 28, 28)), tf.float32),
                labels=tf.constant(rng.integers(0, 10, B), tf.int32),
                d_noise=tf.constant(rng.normal(size=(B, Z)), tf.float32),
                g_noise=tf.constant(rng.normal(size=(B, Z)), tf.float32),
                fake_labels=tf.constant(rng.integers(0, 10, B), tf.int32),
                alpha=tf.constant(rng.uniform(0, 1, (B, 1, 1)), tf.float32))


def make_state(options):
    state = step_lib.create_state(config_lib.TrainConfig(seed=0, **options))
    for name, net in (("g_optimizer", state.generator), ("d_optimizer", state.discriminator)):
        sgd = keras.optimizers.SGD(learning_rate=1.0)
        sgd.build(net.trainable_variables)
        setattr(state, name, sgd)
    return state


# --- the losses by hand ---------------------------------------------------------------------


def packed(images, k):
    """PacGAN's packs by hand: [k*P, 28, 28] -> [P, 28, 28, k], pack p = images pk..pk+k-1
    along the channels."""
    if k == 1:
        return images
    return tf.transpose(tf.reshape(images, [-1, k, 28, 28]), [0, 2, 3, 1])


def d_everything(state, inputs, labels):
    """All of D's outputs on its inputs [P, 28, 28(, k)] (packs with --pack=k), with the
    labels [k*P] of the images in them when conditional: [P, 1], or [P, 1 + 10] with an
    auxiliary classifier."""
    config, d = state.config, state.discriminator
    if not config.conditional:
        return d(inputs, training=True)
    return d([inputs, labels if config.pack == 1 else tf.reshape(labels, [-1, config.pack])],
             training=True)


def d_raw(state, inputs, labels):
    """D's outputs [P, 1] that the GAN loss reads (the first column)."""
    return d_everything(state, inputs, labels)[:, :1]


def auxiliary_loss(state, images, labels):
    """--aux_classifier x the cross-entropy, by hand, of D's label logits [B, 10] (the
    columns after the first) on images [B, 28, 28] against labels [B]; 0.0 without one."""
    if not state.config.aux_classifier:
        return 0.0
    log_p = tf.nn.log_softmax(d_everything(state, images, labels)[:, 1:])
    picked = tf.reduce_sum(log_p * tf.one_hot(labels, 10), axis=1)
    return -state.config.aux_classifier * tf.reduce_mean(picked)


def d_of(state, images, labels):
    """D's outputs [P, 1] on images [B, 28, 28], packed as the config says."""
    return d_raw(state, packed(images, state.config.pack), labels)


def squared_grad_norms(critic, x):
    """||grad_x critic(x_i)||^2 per sample i of x [N, ...], as a [N] vector (samples are
    independent, so the gradient of the sum is each sample's own)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        scores = critic(x)
    grads = tape.gradient(scores, x)
    return tf.reduce_sum(tf.reshape(tf.square(grads), [tf.shape(x)[0], -1]), axis=1)


def discriminator_terms(state, x):
    """(adversarial loss, penalty plus auxiliary loss) of D by hand, on the inputs `x`; the
    second is 0.0 for a loss without a penalty and without --aux_classifier."""
    adversarial, extra = adversarial_terms(state, x)
    labels = x["labels"] if state.config.conditional else None
    return adversarial, extra + auxiliary_loss(state, x["real"], labels)  # reals only


def adversarial_terms(state, x):
    """(adversarial loss, penalty) of D by hand; the penalty is 0.0 for a loss without one."""
    config = state.config
    labels = x["labels"] if config.conditional else None
    fakes = state.generator([x["d_noise"], labels] if config.conditional else x["d_noise"],
                            training=True)
    r, f = d_of(state, x["real"], labels), d_of(state, fakes, labels)
    if config.loss == "bce":
        p_r, p_f = tf.clip_by_value(r, 1e-7, 1 - 1e-7), tf.clip_by_value(f, 1e-7, 1 - 1e-7)
        # mean over the 2B images of -log p (real) and -log(1 - p) (fake)
        return -0.5 * (tf.reduce_mean(tf.math.log(p_r)) + tf.reduce_mean(tf.math.log(1 - p_f))), 0.0
    if config.loss == "hinge":
        return tf.reduce_mean(tf.nn.relu(1 - r)) + tf.reduce_mean(tf.nn.relu(1 + f)), 0.0
    if config.loss == "wgan-gp":
        between = x["alpha"] * x["real"] + (1 - x["alpha"]) * fakes
        norms = tf.sqrt(squared_grad_norms(lambda v: d_raw(state, v, labels), between))
        return (tf.reduce_mean(f) - tf.reduce_mean(r),
                config.gp_weight * tf.reduce_mean(tf.square(norms - 1)))
    assert config.loss == "rpgan"
    # pair i: real pack i against fake pack i; R1 and R2 at D's inputs (the packs)
    critic = lambda v: d_raw(state, v, labels)  # noqa: E731
    pens = [gamma / 2 * tf.reduce_mean(squared_grad_norms(critic, packed(images, config.pack)))
            for gamma, images in ((config.r1, x["real"]), (config.r2, fakes))]
    return tf.reduce_mean(tf.math.softplus(-(r - f))), pens[0] + pens[1]


def generator_loss(state, x):
    """G's loss by hand: the adversarial one plus, with --aux_classifier, that weight times
    the cross-entropy of D's label logits on the fakes against the labels asked of them."""
    labels = x["fake_labels"] if state.config.conditional else None
    fakes = state.generator([x["g_noise"], labels] if state.config.conditional
                            else x["g_noise"], training=True)
    return adversarial_generator_loss(state, x) + auxiliary_loss(state, fakes, labels)


def adversarial_generator_loss(state, x):
    """G's adversarial loss by hand."""
    config = state.config
    labels = x["fake_labels"] if config.conditional else None
    fakes = state.generator([x["g_noise"], labels] if config.conditional else x["g_noise"],
                            training=True)
    f = d_of(state, fakes, labels)
    if config.loss == "bce":
        return -tf.reduce_mean(tf.math.log(tf.clip_by_value(f, 1e-7, 1 - 1e-7)))
    if config.loss in ("hinge", "wgan-gp"):
        return -tf.reduce_mean(f)
    assert config.loss == "rpgan"
    r = d_of(state, x["real"], x["labels"] if config.conditional else None)
    return tf.reduce_mean(tf.math.softplus(-(f - r)))


def gradients(loss_fn, variables):
    with tf.GradientTape() as tape:
        loss = loss_fn()
    # (an embedding's gradient comes as IndexedSlices: made dense)
    return np.concatenate([tf.convert_to_tensor(g).numpy().ravel()
                           for g in tape.gradient(loss, variables)])


def flat(variables):
    return np.concatenate([v.numpy().ravel() for v in variables])


def assert_moved_by_minus(before, after, grad):
    """after - before == -grad, to float32 rounding of the update (|w| ~ 0.1)."""
    error = np.linalg.norm((after - before) + grad)
    assert error <= 1e-4 * np.linalg.norm(grad) + 1e-6, (error, np.linalg.norm(grad))


def discriminator_update(state, x):
    """One D update by the step (traced, as training runs it) on the inputs `x`; its metrics."""
    labels = x["labels"] if state.config.conditional else None
    alpha = x["alpha"] if state.config.loss == "wgan-gp" else None
    return tf.function(step_lib.discriminator_step)(state, x["real"], x["d_noise"], labels,
                                                    alpha)


# --- the pins -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_a_discriminator_update_follows_the_gradient_of_its_loss(case):
    state, x = make_state(CASES[case]), inputs()
    d_vars = state.discriminator.trainable_variables
    total = lambda: tf.add_n([tf.convert_to_tensor(t)  # noqa: E731
                              for t in discriminator_terms(state, x)])
    adversarial_grad = gradients(lambda: discriminator_terms(state, x)[0], d_vars)
    grad = gradients(total, d_vars)
    expected_loss = float(total())
    # With a penalty, its share of the gradient is far above the check's tolerance: a
    # penalty left out of the update (or weighted otherwise) fails below.
    if case not in ("bce", "hinge"):
        assert np.linalg.norm(grad - adversarial_grad) > 0.05 * np.linalg.norm(grad)
    before = flat(d_vars)
    metrics = discriminator_update(state, x)
    assert_moved_by_minus(before, flat(d_vars), grad)
    assert int(state.d_optimizer.iterations) == 1
    # the loss reported is the loss differentiated
    assert float(metrics["d_loss"]) == pytest.approx(expected_loss, rel=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_a_generator_update_follows_the_gradient_of_its_loss(case):
    state, x = make_state(CASES[case]), inputs()
    g_vars = state.generator.trainable_variables
    grad = gradients(lambda: generator_loss(state, x), g_vars)
    expected_loss = float(generator_loss(state, x))
    if state.config.aux_classifier:  # the auxiliary term's share shows above the tolerance
        adversarial_grad = gradients(lambda: adversarial_generator_loss(state, x), g_vars)
        assert np.linalg.norm(grad - adversarial_grad) > 0.05 * np.linalg.norm(grad)
    before = flat(g_vars)
    conditional = state.config.conditional
    metrics = tf.function(step_lib.generator_step)(
        state, x["g_noise"], x["fake_labels"] if conditional else None, x["real"],
        x["labels"] if conditional else None)
    assert_moved_by_minus(before, flat(g_vars), grad)
    assert float(metrics["g_loss"]) == pytest.approx(expected_loss, rel=1e-5)


@pytest.mark.parametrize("case", ["wgan-gp", "rpgan-pack2-conditional"])
@pytest.mark.parametrize("step", [0, 1, 2, 3])
def test_a_lazy_penalty_is_in_one_iteration_of_n_weighted_n(case, step):
    """--penalty_every=3: the D updates of iterations 0, 3, 6, ... follow the adversarial
    loss plus 3x the penalty, the others the adversarial loss alone."""
    state, x = make_state(dict(CASES[case], penalty_every=3)), inputs()
    state.step.assign(step)
    d_vars = state.discriminator.trainable_variables
    weight = 3.0 if step % 3 == 0 else 0.0
    total = lambda: (discriminator_terms(state, x)[0]  # noqa: E731
                     + weight * tf.convert_to_tensor(discriminator_terms(state, x)[1]))
    grad, expected_loss = gradients(total, d_vars), float(total())
    before = flat(d_vars)
    metrics = discriminator_update(state, x)
    assert_moved_by_minus(before, flat(d_vars), grad)
    assert float(metrics["d_loss"]) == pytest.approx(expected_loss, rel=1e-5)
