"""The README's set-up commands and .ci/run must not drift apart.

CI runs ``.ci/run`` on a fresh clone; a new user types the README's commands.  If
the two differ, CI can pass while the README fails (as a bare ``pytest`` once did,
while CI ran ``python -m pytest``).
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_setup_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no ```bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def ci_commands():
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_readme_starts_with_the_two_setup_commands():
    cmds = readme_setup_commands()
    assert len(cmds) == 2, cmds
    assert cmds[0].startswith("pip install -e . && sgd-minima quick")
    assert cmds[1] == 'pip install -e ".[test]" && pytest'


def test_ci_runs_the_readme_commands_verbatim_and_in_order():
    ci = ci_commands()
    positions = [ci.index(cmd) if cmd in ci else -1 for cmd in readme_setup_commands()]
    assert -1 not in positions, f"README commands missing from .ci/run: {readme_setup_commands()}"
    assert positions == sorted(positions)


def test_ci_never_calls_python_m_pytest():
    # `python -m pytest` puts the checkout on sys.path and hides import problems
    # that the bare console script (the README's command) exposes.
    assert not any(re.search(r"-m\s+pytest", line) for line in ci_commands())
