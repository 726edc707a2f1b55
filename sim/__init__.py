"""Vectorised simulators of SGD near a minimum, with honest error bars.

Four parts kept apart (style.md): problems (:mod:`sim.problems`), steppers
(:mod:`sim.sgd`, :mod:`sim.heavy_ball`, :mod:`sim.sde`, :mod:`sim.ou`), the noise source (a
``numpy.random.Generator`` passed in, :mod:`sim.noise`) and recorders
(:mod:`sim.stats`); one driver, :func:`simulate`, combines them and returns a
:class:`SimulationResult`.  The leading array axis is always chains.
"""

from .budget import DEFAULT_MAX_STEPS, BudgetError
from . import budget
from .driver import METHODS, make_stepper, simulate, simulation_memory
from .heavy_ball import HeavyBallGaussian, MinibatchHeavyBall
from .noise import NORMALS, NormalSource
from .ou import exact_ou, ou_transition_cov
from .problems import GaussianQuadratic, LeastSquares, misaligned_problem
from .result import SimulationResult
from .samplers import (
    SAMPLERS,
    EpochShuffle,
    WithoutReplacement,
    WithReplacement,
    make_sampler,
    sampler_noise_factor,
)
from .sde import diffusion_matrix, euler_maruyama, euler_maruyama_path, sdeint_path
from .sgd import MinibatchSGD, gaussian_sgd, second_moment_radius
from .stats import ChainRecorder, across_chain_se, batch_means_se, effective_sample_size

__all__ = [
    "simulate",
    "BudgetError",
    "DEFAULT_MAX_STEPS",
    "simulation_memory",
    "SimulationResult",
    "make_stepper",
    "METHODS",
    "SAMPLERS",
    "NORMALS",
    "GaussianQuadratic",
    "LeastSquares",
    "misaligned_problem",
    "WithReplacement",
    "WithoutReplacement",
    "EpochShuffle",
    "make_sampler",
    "sampler_noise_factor",
    "gaussian_sgd",
    "MinibatchSGD",
    "second_moment_radius",
    "HeavyBallGaussian",
    "MinibatchHeavyBall",
    "euler_maruyama",
    "euler_maruyama_path",
    "sdeint_path",
    "diffusion_matrix",
    "exact_ou",
    "ou_transition_cov",
    "NormalSource",
    "ChainRecorder",
    "across_chain_se",
    "batch_means_se",
    "effective_sample_size",
]
