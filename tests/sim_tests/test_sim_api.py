"""sim's public surface: documented names, runnable docstring examples, one-way dependencies."""

import doctest
import importlib
import subprocess
import sys

import pytest

import sim

MODULES = ["sim.problems", "sim.samplers", "sim.noise", "sim.sgd", "sim.heavy_ball", "sim.sde",
           "sim.ou", "sim.stats", "sim.driver", "sim.result", "sim._linear", "sim._run",
           "sim._validate"]


def test_every_public_name_is_documented():
    assert len(set(sim.__all__)) == len(sim.__all__)
    for name in sim.__all__:
        obj = getattr(sim, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_sim_imports_only_theory_of_ours():
    code = ("import sys, sim; print([m for m in ('validation', 'dnn', 'keras', 'sdeint')"
            " if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"       # sdeint too: imported only by sdeint_path
