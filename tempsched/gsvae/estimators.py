"""How a categorical latent turns logits into the code the decoder reads, and which gradient flows back.

Each estimator is a pure function ``(logits, tau, uniforms) -> code`` over the last axis of ``logits``:
the forward value and its surrogate gradient side by side, written as plain tensor operations on
uniforms drawn beforehand from the member's own generator. Plain operations (no ``F.one_hot``, no
``.item()``) keep them inside ``torch.func.vmap``, so the vmap stepper, per-member noise, bit-exact
resume and ``--procs`` identity hold for every one of them. ``uniforms`` is shaped
``(draws, *logits.shape)``: one draw for the sample itself, and for Gumbel-Rao ``k`` more.

- ``relaxed``: the paper's Gumbel-Softmax, softmax((log pi + g) / tau); the decoder reads the relaxation.
- The straight-through family: the forward value is a one-hot sample D from q = softmax(logits) (the
  Gumbel-max trick on the first draw), so the loss measures the discrete model itself and tau only
  shapes the gradient. Each returns ``D + (s - stopgrad(s))`` for its surrogate ``s``: exactly D forward,
  the gradient of ``s`` backward.

  - ``st-gs``: s = softmax((log pi + g) / tau) at the sample's own Gumbel noise g (Jang et al. 2017).
  - ``st``: s = softmax(logits / tau) (Bengio et al. 2013, with a temperature).
  - ``gst-1.0``: Gapped Straight-Through (Fan et al. 2022): s = softmax((logits + m) / tau), where the
    constant move m lifts the sampled class to the largest logit and keeps every other class at least
    1.0 below it.
  - ``gumbel-rao``: the mean of ST-GS's surrogate over ``k`` Gumbel draws conditioned on the sampled
    class (Paulus et al. 2021): ST-GS's expected gradient given D, with less variance.
  - ``reinmax``: Liu et al. 2023, the ReinMax algorithm (second-order accurate): pi0 = softmax(logits),
    pi1 = (D + softmax(logits / tau)) / 2 with the softmax's gradient taken at pi1, s = 2 pi1 - pi0 / 2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Tau = float | torch.Tensor  # a tensor under vmap, one temperature per member
Surrogate = Callable[[torch.Tensor, Tau, torch.Tensor], torch.Tensor]
GST_GAP = 1.0  # the gap of GST-1.0


def gumbel(u: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise from uniforms on [0, 1), clamped away from log(0)."""
    neg_log_u = -torch.log(u.clamp_min(1e-10))
    return -torch.log(neg_log_u.clamp_min(1e-10))


def one_hot_argmax(scores: torch.Tensor) -> torch.Tensor:
    """The one-hot of the largest score over the last axis (``F.one_hot`` inspects values, which vmap refuses)."""
    return torch.zeros_like(scores).scatter(-1, scores.argmax(dim=-1, keepdim=True), 1.0)


def categorical_sample(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """A one-hot sample from softmax(logits), by the Gumbel-max trick on uniforms ``u`` (shaped as the logits)."""
    return one_hot_argmax(F.log_softmax(logits, dim=-1) + gumbel(u))


def straight_through(sample: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``sample`` exactly in the forward pass (s - stopgrad(s) is 0), the gradient of ``surrogate`` backward."""
    return sample + (surrogate - surrogate.detach())


def relaxed(logits: torch.Tensor, tau: Tau, uniforms: torch.Tensor) -> torch.Tensor:
    """The Gumbel-Softmax relaxation (the paper's eq. 7): no straight-through, the decoder reads it."""
    return F.softmax((F.log_softmax(logits, dim=-1) + gumbel(uniforms[0])) / tau, dim=-1)


def st_gs(logits: torch.Tensor, tau: Tau, uniforms: torch.Tensor) -> torch.Tensor:
    """Straight-through Gumbel-Softmax: one-hot argmax(log pi + g), the gradient of softmax((log pi + g) / tau)."""
    scores = F.log_softmax(logits, dim=-1) + gumbel(uniforms[0])
    return straight_through(one_hot_argmax(scores), F.softmax(scores / tau, dim=-1))


def st(logits: torch.Tensor, tau: Tau, uniforms: torch.Tensor) -> torch.Tensor:
    """Straight-through: a one-hot sample from softmax(logits), the gradient of softmax(logits / tau)."""
    return straight_through(categorical_sample(logits, uniforms[0]), F.softmax(logits / tau, dim=-1))


def gapped_surrogate(logits: torch.Tensor, sample: torch.Tensor, tau: Tau, gap: float = GST_GAP) -> torch.Tensor:
    """GST's surrogate for the one-hot ``sample``: softmax((logits + m) / tau), m constant (no gradient).

    m moves the sampled class's logit up to the largest logit and every other logit down to at most
    ``gap`` below that, so the surrogate's argmax is the sample, with a margin.
    """
    fixed = logits.detach()
    top = fixed.max(dim=-1, keepdim=True).values
    chosen = (fixed * sample).sum(dim=-1, keepdim=True)
    move = (top - chosen) * sample - torch.relu(fixed - top + gap) * (1 - sample)
    return F.softmax((logits + move) / tau, dim=-1)


def gst(logits: torch.Tensor, tau: Tau, uniforms: torch.Tensor) -> torch.Tensor:
    """Gapped Straight-Through with gap 1.0 (GST-1.0)."""
    sample = categorical_sample(logits, uniforms[0])
    return straight_through(sample, gapped_surrogate(logits, sample, tau))


def conditional_gumbel(log_pi: torch.Tensor, sample: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Gumbel noise g, one set per leading row of ``u``, drawn given that argmax(log_pi + g) is ``sample``.

    With exponentials E = -log u: the largest perturbed logit is -log E_i for the sampled class i
    (the maximum of Gumbel-perturbed normalised logits is a standard Gumbel, independent of where it
    lies), and every other class j gets -log(E_j / pi_j + E_i), a Gumbel truncated below that maximum
    (computed in log space, so a tiny pi_j does not overflow).
    """
    log_pi = log_pi.detach()
    log_e = torch.log(-torch.log(u.clamp_min(1e-10)))
    log_e_chosen = (log_e * sample).sum(dim=-1, keepdim=True)
    perturbed = torch.where(sample.bool(), -log_e_chosen, -torch.logaddexp(log_e - log_pi, log_e_chosen))
    return perturbed - log_pi


def gumbel_rao(logits: torch.Tensor, tau: Tau, uniforms: torch.Tensor) -> torch.Tensor:
    """Gumbel-Rao: ST-GS's surrogate averaged over ``len(uniforms) - 1`` noise draws given the sample."""
    log_pi = F.log_softmax(logits, dim=-1)
    sample = one_hot_argmax(log_pi + gumbel(uniforms[0]))
    g = conditional_gumbel(log_pi, sample, uniforms[1:])
    return straight_through(sample, F.softmax((log_pi + g) / tau, dim=-1).mean(dim=0))


def reinmax_surrogate(logits: torch.Tensor, sample: torch.Tensor, tau: Tau) -> torch.Tensor:
    """ReinMax's surrogate for the one-hot ``sample`` (Liu et al. 2023).

    pi1's value is (D + softmax(logits / tau)) / 2; written as softmax(stopgrad(log pi1 - logits) + logits),
    its gradient is the softmax Jacobian at pi1, which with -pi0 / 2 gives the second-order (Heun) step.
    """
    pi0 = F.softmax(logits, dim=-1)
    pi1 = (sample + F.softmax(logits / tau, dim=-1)) / 2
    pi1 = F.softmax((torch.log(pi1) - logits).detach() + logits, dim=-1)
    return 2 * pi1 - pi0 / 2


def reinmax(logits: torch.Tensor, tau: Tau, uniforms: torch.Tensor) -> torch.Tensor:
    """ReinMax: a one-hot sample from softmax(logits) with ReinMax's gradient."""
    sample = categorical_sample(logits, uniforms[0])
    return straight_through(sample, reinmax_surrogate(logits, sample, tau))


@dataclass(frozen=True)
class Estimator:
    """A named surrogate and how many uniforms per logit it reads (``1 + conditional_draws``)."""

    name: str
    help: str
    surrogate: Surrogate
    conditional_draws: int = 0
    discrete: bool = True  # the forward value is a one-hot sample of q = softmax(logits)

    @property
    def draws(self) -> int:
        return 1 + self.conditional_draws

    def __call__(self, logits: torch.Tensor, tau: Tau, uniforms: torch.Tensor) -> torch.Tensor:
        return self.surrogate(logits, tau, uniforms)

    def with_draws(self, k: int) -> Estimator:
        """This estimator with ``k`` conditional draws, where it takes any (Gumbel-Rao); others stay as they are."""
        return dataclasses.replace(self, conditional_draws=k) if self.conditional_draws else self


ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (
    Estimator("relaxed", "Gumbel-Softmax relaxation (the paper's)", relaxed, discrete=False),
    Estimator("st-gs", "straight-through Gumbel-Softmax", st_gs),
    Estimator("st", "straight-through, gradient of softmax(logits / tau)", st),
    Estimator("gst-1.0", "gapped straight-through, gap 1.0 (Fan et al. 2022)", gst),
    Estimator("gumbel-rao", "Gumbel-Rao, k conditional draws (Paulus et al. 2021)", gumbel_rao, conditional_draws=100),
    Estimator("reinmax", "ReinMax (Liu et al. 2023)", reinmax),
)}
