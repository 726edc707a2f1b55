"""A small multilayer perceptron as plain JAX functions of one flat float64 parameter vector.

The exact checks (full Hessian, per-example gradients, a Newton polish to
‖∇L‖ ≤ 1e-8) need float64, which Keras layers on the JAX backend do not give us
without switching the whole process; so this network is written directly in
JAX. The objective is softmax cross-entropy, a mean over the N examples, plus an
L2 penalty on *all* parameters (weights and biases):

    L(θ) = (1/N) Σ_i ℓ_i(θ) + λ‖θ‖²,   ℓ_i = logsumexp(z_i) − z_{i,y_i},

with z_i the logits. θ is laid out layer by layer, each layer's weight matrix
(n_in, n_out) row-major and then its bias (n_out,); with 64 inputs, one hidden
layer of 32 and 10 classes, P = 64·32 + 32 + 32·10 + 10 = 2410.

float64 is *scoped*, not global: the test session also runs Keras in float32
on JAX, and ``jax_enable_x64`` set process-wide would change its dtypes. Wrap
every use of these functions in ``with dnn.exact.mlp.float64():`` (jax's thread-local
``enable_x64`` context); the public drivers (``find_minimum``,
``exact_quantities``, ``callables``, ``run_sgd_chains``) do it themselves. Outside
that context jax silently makes arrays float32, so the functions below refuse a
θ that is not float64 instead of computing in single precision.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["ACTIVATIONS", "MLPConfig", "MLP", "float64"]

#: Activations offered. ``relu`` is accepted, but its L2-regularised minimum sits
#: on kinks (see ``dnn.exact.minimum``), so the exact checks refuse it.
ACTIVATIONS = ("tanh", "softplus", "relu")


@contextlib.contextmanager
def float64():
    """Context in which JAX creates and traces float64 arrays (thread-local, not process-wide).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> with float64():
    ...     print(jnp.ones(2).dtype)
    float64
    """
    import jax

    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # jax < 0.4.36 keeps it in jax.experimental
        from jax.experimental import enable_x64 as enable
        with enable():
            yield
        return
    with enable(True):
        yield


@dataclass(frozen=True)
class MLPConfig:
    """Architecture and regularisation of the MLP."""

    hidden: tuple = (32,)       # widths of the hidden layers (may be empty: softmax regression)
    activation: str = "tanh"    # one of ACTIVATIONS
    l2: float = 1e-3            # λ in λ‖θ‖², on all parameters; >= 0
    seed: int = 0               # default seed of MLP.init

    def __post_init__(self):
        hidden = self.hidden
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
            hidden = (hidden,)
        try:
            hidden = tuple(hidden)
        except TypeError:
            raise ValueError(f"hidden must be a sequence of positive integers; got {self.hidden!r}") from None
        for h in hidden:
            if isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1:
                raise ValueError(f"hidden must be a sequence of positive integers; got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}; got {self.activation!r}")
        try:
            l2 = float(self.l2)
        except (TypeError, ValueError):
            raise ValueError(f"l2 must be a finite number >= 0; got {self.l2!r}") from None
        if not (math.isfinite(l2) and l2 >= 0):
            raise ValueError(f"l2 must be a finite number >= 0; got {self.l2!r}")
        object.__setattr__(self, "l2", l2)
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0; got {self.seed!r}")


@dataclass(frozen=True)
class MLP:
    """The network: layer sizes and pure JAX functions of a flat float64 θ (shape (P,)).

    Hashable, so it can key compiled-function caches. Call its functions inside
    ``with dnn.exact.mlp.float64():``.

    Examples
    --------
    >>> MLP(MLPConfig(), n_inputs=64, n_classes=10).n_params
    2410
    """

    config: MLPConfig
    n_inputs: int
    n_classes: int

    def __post_init__(self):
        if not isinstance(self.config, MLPConfig):
            raise TypeError(f"config must be an MLPConfig; got {type(self.config).__name__}")
        for name in ("n_inputs", "n_classes"):
            value = getattr(self, name)
            low = 1 if name == "n_inputs" else 2
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
            object.__setattr__(self, name, int(value))

    # ------------------------------------------------------------------ layout
    @property
    def sizes(self) -> tuple:
        """(n_inputs, *hidden, n_classes)."""
        return (self.n_inputs, *self.config.hidden, self.n_classes)

    @property
    def shapes(self) -> list:
        """Shapes in θ order: W₁ (n₀, n₁), b₁ (n₁,), W₂, b₂, …"""
        out = []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            out += [(n_in, n_out), (n_out,)]
        return out

    @property
    def n_params(self) -> int:
        """P = Σ_layers (n_in·n_out + n_out)."""
        return int(sum(math.prod(s) for s in self.shapes))

    @property
    def l2(self) -> float:
        return self.config.l2

    @property
    def activation(self) -> str:
        return self.config.activation

    def init(self, seed: int | None = None) -> np.ndarray:
        """Random θ (P,) float64: weights N(0, 1/n_in) (LeCun normal), biases 0.

        ``seed`` defaults to ``config.seed``; the same seed gives the same θ.
        """
        seed = self.config.seed if seed is None else seed
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
        rng = np.random.default_rng(seed)
        parts = []
        for shape in self.shapes:
            if len(shape) == 2:
                parts.append(rng.standard_normal(shape).ravel() / math.sqrt(shape[0]))
            else:
                parts.append(np.zeros(shape))
        return np.concatenate(parts).astype(np.float64)

    def unflatten(self, theta) -> list:
        """Split θ into [W₁, b₁, W₂, b₂, …] (views/slices, no copy in JAX)."""
        out, start = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            out.append(theta[start:start + size].reshape(shape))
            start += size
        return out

    # ------------------------------------------------------------------ JAX functions
    def logits(self, theta, x):
        """z = f(θ, x): (B, n_classes) for x (B, n_inputs); affine layers with the activation between."""
        import jax
        import jax.numpy as jnp

        theta = self._check_theta(theta)
        act = {"tanh": jnp.tanh, "softplus": jax.nn.softplus, "relu": jax.nn.relu}[self.config.activation]
        params = self.unflatten(theta)
        h = jnp.asarray(x, dtype=theta.dtype)
        n_layers = len(params) // 2
        for k in range(n_layers):
            h = h @ params[2 * k] + params[2 * k + 1]
            if k < n_layers - 1:
                h = act(h)
        return h

    def per_example_loss(self, theta, x, y):
        """ℓ_i = logsumexp(z_i) − z_{i,y_i}, shape (B,)."""
        import jax
        import jax.numpy as jnp

        z = self.logits(theta, x)
        y = jnp.asarray(y)
        return jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(z, y[:, None], axis=-1)[:, 0]

    def example_loss(self, theta, xi, yi):
        """ℓ(θ; x_i, y_i) for one example (xi (n_inputs,), yi scalar): the function per-example derivatives use."""
        import jax.numpy as jnp

        return self.per_example_loss(theta, jnp.asarray(xi)[None], jnp.asarray(yi)[None])[0]

    def data_loss(self, theta, x, y):
        """(1/B) Σ_i ℓ_i: the data part of the objective."""
        return self.per_example_loss(theta, x, y).mean()

    def loss(self, theta, x, y):
        """L(θ) = (1/B) Σ_i ℓ_i + λ‖θ‖²: the full objective."""
        import jax.numpy as jnp

        theta = self._check_theta(theta)
        return self.data_loss(theta, x, y) + self.config.l2 * jnp.sum(theta * theta)

    def accuracy(self, theta, x, y):
        """Fraction of examples whose largest logit is the label."""
        import jax.numpy as jnp

        return jnp.mean(jnp.argmax(self.logits(theta, x), axis=-1) == jnp.asarray(y))

    def _check_theta(self, theta):
        import jax.numpy as jnp

        theta = jnp.asarray(theta)
        if theta.dtype != jnp.float64:
            raise TypeError(f"theta must be float64 (got {theta.dtype}); call the MLP's functions inside "
                            "`with dnn.exact.mlp.float64():`")
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta must have shape ({self.n_params},); got {theta.shape}")
        return theta
