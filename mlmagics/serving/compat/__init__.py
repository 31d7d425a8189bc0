"""Import shims so that Azure ML v1 scoring scripts run unchanged.

`install()` appends one finder to the *end* of `sys.meta_path`. Python asks it only
after every real finder failed, so an installed `azureml` package or an old scikit-learn
that still ships `sklearn.externals.joblib` always wins; the shims fill the gaps only:

- `azureml.core.model.Model.get_model_path`, `azureml.contrib.services.aml_request`
  (`AMLRequest`, `rawhttp`), `azureml.contrib.services.aml_response` (`AMLResponse`),
  `azureml.monitoring.ModelDataCollector` — served from the `azureml/` folder next to this file;
- `sklearn.externals.joblib` (and its submodules, which old pickles name) -> `joblib`:
  scikit-learn 0.23 removed it, and v1 scripts, the seed's among them, still import it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings

_HERE = os.path.dirname(os.path.abspath(__file__))
_JOBLIB_ALIAS = "sklearn.externals.joblib"


class _AliasLoader(importlib.abc.Loader):
    """Makes `name` another name for an already importable module, without touching it."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):  # default module creation
        return None

    def exec_module(self, module) -> None:
        # The import system re-reads sys.modules after exec_module, so the real module is
        # what the importer gets, and its own __spec__ stays as it was.
        sys.modules[module.__name__] = importlib.import_module(self.target)


class CompatFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "azureml" or fullname.startswith("azureml."):
            return self._azureml_spec(fullname)
        if fullname == _JOBLIB_ALIAS or fullname.startswith(_JOBLIB_ALIAS + "."):
            if importlib.util.find_spec("joblib") is None:
                return None
            warnings.warn(
                "the script imports sklearn.externals.joblib, which scikit-learn 0.23 removed; "
                "mlmagics maps it to the joblib package (write `import joblib` to silence this)",
                stacklevel=2,
            )
            target_name = "joblib" + fullname[len(_JOBLIB_ALIAS) :]
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader(target_name))
        return None

    @staticmethod
    def _azureml_spec(fullname: str):
        base = os.path.join(_HERE, *fullname.split("."))
        if os.path.isfile(os.path.join(base, "__init__.py")):
            return importlib.util.spec_from_file_location(
                fullname, os.path.join(base, "__init__.py"), submodule_search_locations=[base]
            )
        if os.path.isfile(base + ".py"):
            return importlib.util.spec_from_file_location(fullname, base + ".py")
        return None


def install() -> None:
    """Add the shims (once) behind every real finder."""
    if not any(isinstance(f, CompatFinder) for f in sys.meta_path):
        sys.meta_path.append(CompatFinder())


def raw_http_requested() -> bool:
    """True when any `rawhttp` (ours or a real azureml-contrib-services) decorated a function."""
    names = ("azureml.contrib.services.aml_request", "azureml_inference_server_http.api.aml_request")
    return any(getattr(sys.modules.get(n), "_rawHttpRequested", False) for n in names)
