"""Pure formulas for where SGD settles near a minimum (numpy/scipy only).

Continuous-time (OU) results of Wang (2019) and Jastrzębski et al. (2018), the exact
discrete-time correction, the exact finite-sum least-squares law, and the first-order
state-dependent noise correction for general networks.  Each stationary law also takes
heavy-ball ``momentum=β`` (:mod:`theory.momentum` derives the stacked system).  The full
linear theory with state-dependent noise to all orders, and the mean-square stability
edge beyond which it does not exist, are in :mod:`theory.stability`.  See
``docs/theory.md`` in the shared notes for conventions.
"""

from ._validate import StabilityError
from .least_squares import (
    LeastSquaresMoments,
    LeastSquaresStationary,
    least_squares_moments,
    least_squares_stationary,
)
from .lyapunov import stationary_covariance
from .momentum import heavy_ball_covariance
from .sampling import noise_factor
from .stability import (
    StabilityEdge,
    directional_growth_factor,
    expected_loss_linear,
    linear_stationary_covariance,
    mean_square_stability_edge,
    second_moment_spectral_radius,
)
from .state_dependent import (
    state_dependent_correction,
    state_dependent_correction_from_trace,
    state_dependent_covariance_first_order,
)
from .stationary import (
    expected_grad_sqnorm,
    expected_loss_discrete,
    expected_loss_jastrzebski,
    expected_loss_wang,
    expected_sq_distance,
    sgd_covariance,
)

__all__ = [
    "StabilityError",
    "noise_factor",
    "stationary_covariance",
    "sgd_covariance",
    "expected_loss_wang",
    "expected_loss_jastrzebski",
    "expected_loss_discrete",
    "expected_grad_sqnorm",
    "expected_sq_distance",
    "heavy_ball_covariance",
    "second_moment_spectral_radius",
    "mean_square_stability_edge",
    "StabilityEdge",
    "linear_stationary_covariance",
    "expected_loss_linear",
    "directional_growth_factor",
    "least_squares_moments",
    "LeastSquaresMoments",
    "least_squares_stationary",
    "LeastSquaresStationary",
    "state_dependent_correction",
    "state_dependent_covariance_first_order",
    "state_dependent_correction_from_trace",
]
