"""Every public docstring example of torchlc_geo runs and gives the shown result."""

import doctest
import importlib

import pytest

MODULES = ["connectivity", "layers", "activations", "model", "params", "baselines", "train", "utils",
           "kernels.ops", "sklearn", "bench", "sweep"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write reports do so in a scratch directory
    mod = importlib.import_module(f"torchlc_geo.{name}")
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0
    assert res.attempted > 0


def test_every_public_function_has_an_example():
    missing = []
    for name in MODULES:
        mod = importlib.import_module(f"torchlc_geo.{name}")
        for attr in getattr(mod, "__all__", []):
            obj = getattr(mod, attr)
            if callable(obj) and not isinstance(obj, type(pytest)) and getattr(obj, "__module__", "") == mod.__name__:
                doc = getattr(obj, "__doc__", "") or ""
                if ">>>" not in doc and not (isinstance(obj, type) and issubclass(obj, Warning)):
                    missing.append(f"{name}.{attr}")
    assert not missing, missing
