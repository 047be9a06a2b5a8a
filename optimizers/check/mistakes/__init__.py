"""The catalogue of known mistakes: each a mutated textbook implementation.

Every entry names the algorithm it belongs to, the equation it breaks and explains
in one paragraph what goes wrong and when it shows. The checker runs each entry
through the same scenarios as the submission and reports the entries whose
trajectories the submission matches, or comes closest to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from optimizers.check.mistakes import adagrad, adam, rmsprop, sgd_family


@dataclass(frozen=True)
class Mistake:
    """One known mistake."""

    name: str
    algorithm: str  # the --as name it is a mistake of
    title: str
    equation: str  # the equation it breaks, as the reference states it
    explanation: str
    cls: type[torch.optim.Optimizer]


#: The unmutated textbook class of each algorithm (tests pin them to the reference).
TEXTBOOK: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": sgd_family.TextbookSGD,
    "momentum": sgd_family.TextbookSGD,
    "nesterov": sgd_family.TextbookSGD,
    "adagrad": adagrad.TextbookAdagrad,
    "rmsprop": rmsprop.TextbookRMSprop,
    "adam": adam.TextbookAdam,
}

_ENTRIES = (
    Mistake(
        "sgd_weight_decay_after_update",
        "sgd",
        "weight decay applied after the update",
        "theta_t = theta_{t-1} - gamma (g_t + lambda theta_{t-1})",
        "The parameter is first moved along the raw gradient and then shrunk by "
        "gamma*lambda using the already-updated value, so the decay acts on "
        "theta_t' instead of theta_{t-1}. The two differ by gamma^2*lambda*g per "
        "step: small, but not the same algorithm, and with momentum the decay "
        "would also bypass the buffer. Add lambda*theta to the gradient before "
        "anything else uses it.",
        sgd_family.WeightDecayAfterUpdate,
    ),
    Mistake(
        "sgd_weight_decay_without_lr",
        "sgd",
        "weight decay not scaled by the learning rate",
        "theta_t = theta_{t-1} - gamma (g_t + lambda theta_{t-1})",
        "The decay term is subtracted as lambda*theta instead of "
        "gamma*lambda*theta, so the parameters shrink by a factor (1 - lambda) per "
        "step whatever the learning rate: with lambda = 0.1 that is 10% per step, "
        "far stronger than L2 regularisation with the same lambda. L2 weight decay "
        "is part of the gradient and is scaled by gamma like the rest of it.",
        sgd_family.WeightDecayNotScaledByLr,
    ),
    Mistake(
        "momentum_ema_buffer",
        "momentum",
        "momentum buffer as an average started at zero times (1 - mu)",
        "b_t = mu b_{t-1} + (1 - tau) g_t with b_1 = g_1 and tau = dampening = 0",
        "The buffer is kept as an exponential moving average, "
        "b_t = mu*b_{t-1} + (1 - mu)*g_t from b_0 = 0, the form used for Adam's first "
        "moment. PyTorch's heavy ball sums the gradients without the (1 - mu) "
        "factor and starts from b_1 = g_1, so this version takes steps (1 - mu) "
        "times as large (10x smaller at mu = 0.9) and is biased toward zero at "
        "the start. It is equivalent to dampening = momentum with a zero start.",
        sgd_family.MomentumEMA,
    ),
    Mistake(
        "momentum_first_step_dampened",
        "momentum",
        "dampening applied on the first step (buffer started at zero)",
        "b_1 = g_1 (no dampening on the first step); b_t = mu b_{t-1} + (1 - tau) g_t",
        "The buffer is initialised to zeros and the dampened update is applied "
        "from the first step, so b_1 = (1 - tau)*g_1 instead of g_1. PyTorch starts "
        "the buffer at the first gradient, undampened. The difference appears only "
        "with dampening > 0 and decays as mu^t, but it moves every later step.",
        sgd_family.MomentumFirstStepDampened,
    ),
    Mistake(
        "momentum_sutskever_form",
        "momentum",
        "learning rate folded into the buffer (Sutskever's form)",
        "b_t = mu b_{t-1} + g_t;  theta_t = theta_{t-1} - gamma_t b_t",
        "The velocity accumulates gamma*g (v = mu*v + gamma*g; theta -= v), the form "
        "of Sutskever et al. 2013. With a constant learning rate it is the same "
        "trajectory as PyTorch's, but when gamma changes (a scheduler, or by hand) "
        "the old velocity keeps the old learning rate, while PyTorch rescales the "
        "whole buffer by the new one. It shows only when hyperparameters change "
        "between steps.",
        sgd_family.MomentumSutskever,
    ),
    Mistake(
        "momentum_lr_twice",
        "momentum",
        "learning rate applied twice",
        "b_t = mu b_{t-1} + g_t;  theta_t = theta_{t-1} - gamma b_t",
        "The gradient is scaled by gamma when it enters the buffer and the buffer "
        "is scaled by gamma again in the update, mixing Sutskever's and PyTorch's "
        "forms: the effective step is gamma^2 times the buffer, so with gamma = 0.05 "
        "the optimizer moves 20 times too slowly.",
        sgd_family.MomentumLrTwice,
    ),
    Mistake(
        "momentum_weight_decay_on_update",
        "momentum",
        "weight decay applied to the update instead of the gradient",
        "g_t = grad + lambda theta_{t-1}, then b_t = mu b_{t-1} + (1 - tau) g_t",
        "The decay term lambda*theta is added to the step after the momentum "
        "buffer has been formed from the raw gradient, so it never enters the "
        "buffer. In PyTorch L2 decay is part of the gradient and is accumulated "
        "with it; here it acts without momentum, which amounts to a weaker "
        "regulariser by a factor of about 1/(1 - mu).",
        sgd_family.WeightDecayOnUpdate,
    ),
    Mistake(
        "nesterov_as_plain_momentum",
        "nesterov",
        "plain momentum where Nesterov was asked for",
        "d_t = g_t + mu b_t;  theta_t = theta_{t-1} - gamma d_t",
        "The step follows the buffer b_t, as heavy-ball momentum does, instead of "
        "the look-ahead direction g_t + mu*b_t. The nesterov flag is accepted but "
        "has no effect.",
        sgd_family.NesterovAsPlainMomentum,
    ),
    Mistake(
        "nesterov_dampened",
        "nesterov",
        "dampening applied to Nesterov momentum",
        "b_t = mu b_{t-1} + g_t (Nesterov requires dampening tau = 0)",
        "The buffer is updated as mu*b + (1 - mu)*g, i.e. with dampening equal to "
        "the momentum. PyTorch refuses Nesterov with dampening because the "
        "look-ahead g + mu*b then no longer corresponds to Nesterov's method; "
        "the buffer grows (1 - mu) times as fast as it should.",
        sgd_family.NesterovDampened,
    ),
    Mistake(
        "nesterov_lookahead_without_mu",
        "nesterov",
        "look-ahead adds the whole buffer",
        "d_t = g_t + mu b_t",
        "The Nesterov direction is written g_t + b_t, dropping the factor mu on "
        "the buffer. On a steady gradient g the buffer tends to g / (1 - mu), so "
        "the step tends to (1 + 1/(1 - mu)) g instead of (1 + mu/(1 - mu)) g: "
        "11 g instead of 10 g at mu = 0.9, and every step differs from the first "
        "one on.",
        sgd_family.NesterovLookaheadWithoutMu,
    ),
    Mistake(
        "adagrad_accumulates_gradients",
        "adagrad",
        "Adagrad accumulating gradients instead of squared gradients",
        "G_t = G_{t-1} + g_t^2",
        "The accumulator adds g_t instead of g_t^2. It can become negative, so "
        "sqrt(G) turns into NaN, and where it stays positive it no longer measures "
        "the gradient's scale, so Adagrad's per-coordinate step size is lost.",
        adagrad.AccumulatesGradients,
    ),
    Mistake(
        "adagrad_eps_inside_sqrt",
        "adagrad",
        "epsilon inside the square root",
        "theta_t = theta_{t-1} - gamma_t g_t / (sqrt(G_t) + eps)",
        "The denominator is sqrt(G + eps) instead of sqrt(G) + eps. For eps = 1e-10 "
        "the floor on the denominator becomes 1e-5 instead of 1e-10, which changes "
        "the step of every coordinate with a small accumulated gradient, and the "
        "effect grows with larger eps.",
        adagrad.EpsInsideSqrt,
    ),
    Mistake(
        "adagrad_tf_initial_accumulator",
        "adagrad",
        "TensorFlow's initial accumulator of 0.1 as the default",
        "G_0 = initial_accumulator_value, default 0",
        "The accumulator starts at 0.1, TensorFlow's and Keras's default, instead of "
        "PyTorch's 0. Early steps are then much smaller: the first step is "
        "gamma*g/sqrt(0.1 + g^2) instead of gamma*sign(g).",
        adagrad.TensorFlowAccumulator,
    ),
    Mistake(
        "adagrad_lr_decay_off_by_one",
        "adagrad",
        "learning-rate decay counted from the first step",
        "gamma_t = gamma / (1 + (t - 1) eta)",
        "The decayed learning rate uses t instead of t - 1, so even the first step "
        "is already decayed. It shows only with lr_decay > 0.",
        adagrad.LrDecayOffByOne,
    ),
    Mistake(
        "rmsprop_averages_gradient",
        "rmsprop",
        "RMSProp averaging the gradient instead of its square",
        "v_t = alpha v_{t-1} + (1 - alpha) g_t^2",
        "The running average is taken of g_t rather than g_t^2. It is a first "
        "moment, it can be negative (sqrt gives NaN), and dividing by its root does "
        "not normalise the gradient's scale.",
        rmsprop.AveragesGradient,
    ),
    Mistake(
        "rmsprop_eps_inside_sqrt",
        "rmsprop",
        "epsilon inside the square root (Keras/TensorFlow placement)",
        "theta_t = theta_{t-1} - gamma g_t / (sqrt(v_t) + eps)",
        "The denominator is sqrt(v + eps) as in Keras and TensorFlow, not "
        "sqrt(v) + eps as in PyTorch. The two agree only when eps is negligible "
        "next to v; with eps = 1e-8 the floor becomes 1e-4, and for larger eps "
        "the steps differ everywhere.",
        rmsprop.EpsInsideSqrt,
    ),
    Mistake(
        "rmsprop_alpha_swapped",
        "rmsprop",
        "smoothing constant applied to the wrong term",
        "v_t = alpha v_{t-1} + (1 - alpha) g_t^2",
        "The average is written (1 - alpha)*v + alpha*g^2, so with alpha = 0.99 it "
        "keeps only 1% of its history and is almost the current g^2: the method "
        "degenerates into sign-like steps of size gamma.",
        rmsprop.AlphaSwapped,
    ),
    Mistake(
        "adam_no_bias_correction",
        "adam",
        "bias correction missing",
        "mhat_t = m_t / (1 - beta1^t),  vhat_t = v_t / (1 - beta2^t)",
        "The moments are used as they are. Both start at zero, so early on m_t and "
        "v_t are biased toward zero; without the correction the first steps are "
        "scaled by (1 - beta1)/sqrt(1 - beta2): about 3 times larger than intended "
        "at the default betas (0.1/sqrt(0.001)).",
        adam.NoBiasCorrection,
    ),
    Mistake(
        "adam_bias_correction_swapped",
        "adam",
        "bias correction applied to the wrong moment",
        "mhat_t = m_t / (1 - beta1^t),  vhat_t = v_t / (1 - beta2^t)",
        "Each moment is divided by the other moment's correction: m by "
        "(1 - beta2^t) and v by (1 - beta1^t). The first steps are then wildly "
        "off (at t = 1 by a factor of about sqrt(0.1)/0.001).",
        adam.BiasCorrectionSwapped,
    ),
    Mistake(
        "adam_second_moment_uncorrected",
        "adam",
        "bias correction applied to the first moment only",
        "vhat_t = v_t / (1 - beta2^t)",
        "m is corrected but v is not, so the denominator sqrt(v_t) is too small "
        "early on (by sqrt(1 - beta2^t)) and the first few hundred steps are too "
        "large: about 30 times at t = 1 with beta2 = 0.999.",
        adam.SecondMomentUncorrected,
    ),
    Mistake(
        "adam_eps_inside_sqrt",
        "adam",
        "epsilon inside the square root",
        "theta_t = theta_{t-1} - gamma mhat_t / (sqrt(vhat_t) + eps)",
        "The denominator is sqrt(vhat + eps). For eps = 1e-8 its floor becomes 1e-4 "
        "instead of 1e-8, which damps the steps of coordinates with small "
        "gradients; for a larger eps it changes every step.",
        adam.EpsInsideSqrt,
    ),
    Mistake(
        "adam_eps_before_bias_correction",
        "adam",
        "epsilon added before bias correction",
        "theta_t = theta_{t-1} - gamma mhat_t / (sqrt(vhat_t) + eps)",
        "The step uses gamma*sqrt(1 - beta2^t)/(1 - beta1^t) * m/(sqrt(v) + eps), "
        "the 'efficient' form of Kingma and Ba: eps is added to the uncorrected "
        "sqrt(v) and so is effectively eps/sqrt(1 - beta2^t), about 30 times "
        "larger at t = 1 with beta2 = 0.999. It equals PyTorch's Adam only with "
        "eps = 0.",
        adam.EpsBeforeBiasCorrection,
    ),
    Mistake(
        "adam_decoupled_weight_decay",
        "adam",
        "weight decay decoupled (AdamW) where Adam's L2 was asked for",
        "g_t = grad + lambda theta_{t-1} (L2, before the moments)",
        "The parameters are shrunk by (1 - gamma*lambda) outside the adaptive "
        "update, as AdamW does, instead of adding lambda*theta to the gradient. "
        "In Adam the L2 term passes through the moments and is normalised by "
        "sqrt(vhat); the two are different algorithms (Loshchilov and Hutter).",
        adam.DecoupledWeightDecay,
    ),
    Mistake(
        "adam_step_per_group",
        "adam",
        "step counter kept per group instead of per parameter",
        "t = the number of steps this parameter has taken",
        "The bias corrections use a step count shared by the whole param group. "
        "A parameter that had no gradient on some steps has taken fewer steps "
        "than its group, so its moments are corrected for the wrong t. PyTorch "
        "keeps 'step' in each parameter's state.",
        adam.StepPerGroup,
    ),
    Mistake(
        "adam_shared_state",
        "adam",
        "one state shared by several parameters",
        "m_t(theta) = beta1 m_{t-1}(theta) + (1 - beta1) g_t(theta) for each theta",
        "The moments live in one state entry shared by all parameters of the "
        "same shape (keyed by shape, or by position instead of by parameter), so "
        "their gradients are mixed into one m and one v and every such parameter "
        "is updated with the others' history.",
        adam.SharedState,
    ),
)

CATALOGUE: dict[str, Mistake] = {m.name: m for m in _ENTRIES}


def mistakes_for(algorithm: str) -> list[Mistake]:
    """The catalogue entries of ``algorithm``."""
    return [m for m in _ENTRIES if m.algorithm == algorithm]
