"""Every name a package lists in __all__ imports; dnn's listing does not pull keras at import."""

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["theory", "sim", "validation"])
def test_every_public_name_imports(package):
    mod = importlib.import_module(package)
    assert mod.__all__, f"{package} lists no public API"
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{package}.{name}"


def test_theory_imports_nothing_of_ours():
    code = ("import sys, theory; ours = [m for m in ('sim', 'dnn', 'validation') if m in sys.modules];"
            "print(ours)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importing_dnn_does_not_import_a_framework():
    code = ("import sys, dnn; heavy = [m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules];"
            "print(heavy, len(dnn.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, n = out.stdout.split("]")
    assert heavy == "[" and int(n) > 0
