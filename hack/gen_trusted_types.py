#!/usr/bin/env python3
"""Write the classes a model file may hold:
artifacts/src/modelfactory_artifacts/skops_trusted_types.json.

    .venv/bin/python hack/gen_trusted_types.py            # discover, review the diff, commit
    .venv/bin/python hack/gen_trusted_types.py --check    # exit 1 when the file misses a type

The list is what the trainer can produce: every estimator of sklearn_estimators.json that the
trainer accepts, inside the trainer's own pipeline (with and without preprocessing), fitted on
small data for each task, with each value of its string and boolean parameters in turn, dumped
with skops; `modelfactory_artifacts.metadata.types_in` lists every type each file holds (skops' own
defaults included: the list does not lean on them). Only classes of scikit-learn, numpy and scipy
and a few builtin containers are kept: a function, or a class from anywhere else, is never
trusted whatever a model holds (a model that needs one fails to write in the trainer and to load
in the server, and the failure names it). The output is reviewed like code.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy
import sklearn
import skops
import skops.io as sio
from sklearn.base import is_classifier
from sklearn.utils._param_validation import StrOptions

ROOT = Path(__file__).resolve().parent.parent
for part in ("api", "artifacts", "training"):
    sys.path.insert(0, str(ROOT / part / "src"))

from modelfactory_artifacts.metadata import TRUSTED_TYPES_FILE, types_in  # noqa: E402
from modelfactory_training.errors import SpecError  # noqa: E402
from modelfactory_training.estimator import resolve_estimator  # noqa: E402
from modelfactory_training.pipeline import build_pipeline  # noqa: E402

CATALOGUE = ROOT / "api/src/modelfactory_api/sklearn_estimators.json"
OUT = ROOT / "artifacts/src/modelfactory_artifacts" / TRUSTED_TYPES_FILE
ROOTS = ("sklearn", "numpy", "scipy")
# Builtin classes skops rebuilds plain values with; never `type`, `object` or a function.
BUILTINS = {
    f"builtins.{n}"
    for n in (
        "bool",
        "bytes",
        "complex",
        "dict",
        "float",
        "frozenset",
        "int",
        "list",
        "set",
        "slice",
        "str",
        "tuple",
    )
}
ROWS = 90


def frames(seed: int = 0) -> dict[str, pd.DataFrame]:
    """Feature frames the trainer can see: mixed with gaps (preprocessing on), plain numbers,
    and non-negative counts (for the naive Bayes models)."""
    rng = np.random.default_rng(seed)
    numeric = pd.DataFrame(rng.normal(size=(ROWS, 3)), columns=["a", "b", "c"])
    mixed = numeric.copy()
    mixed.loc[::7, "a"] = np.nan
    mixed["colour"] = rng.choice(["red", "green", "blue", None], size=ROWS)
    mixed["flag"] = rng.choice([True, False], size=ROWS)
    counts = pd.DataFrame(rng.integers(0, 5, size=(ROWS, 3)), columns=["a", "b", "c"])
    return {"mixed": mixed, "numeric": numeric, "counts": counts, "single": numeric[["a"]]}


def targets(seed: int = 0) -> dict[str, pd.Series]:
    rng = np.random.default_rng(seed + 1)
    return {
        "binary": pd.Series(rng.choice(["no", "yes"], size=ROWS), name="y"),
        "multiclass": pd.Series(rng.integers(0, 3, size=ROWS), name="y"),
        "regression": pd.Series(rng.gamma(2.0, size=ROWS) + 0.1, name="y"),
    }


def param_variants(cls: type) -> Iterator[dict[str, Any]]:
    """Defaults, then each string option and boolean of the estimator's parameters in turn."""
    yield {}
    defaults = cls().get_params(deep=False)
    if "random_state" in defaults:
        yield {"random_state": 0}
    for name, constraints in sorted(getattr(cls, "_parameter_constraints", {}).items()):
        for c in constraints:
            if isinstance(c, StrOptions):
                for option in sorted(c.options):
                    if option != defaults.get(name):
                        yield {name: option}
            elif c == "boolean" or c is bool:
                yield {name: not defaults.get(name)}
    # Bounded one-hot encoding (infrequent categories, a cap) changes what the encoder keeps.
    yield {"__onehot__": {"min_frequency": 5, "max_categories": 3}}


def fast(cls: type) -> dict[str, Any]:
    """Fewer trees, one component (all a single target allows): what a model holds does not
    depend on how many."""
    params = cls().get_params(deep=False)
    return {k: v for k, v in (("n_estimators", 3), ("n_components", 1)) if k in params}


def fitted_models(path: str) -> Iterator[tuple[str, Any]]:
    """Every configuration of one estimator that fits, as the trainer would build it."""
    try:
        cls = resolve_estimator(path)
    except SpecError:
        return  # the trainer refuses it (needs constructor arguments)
    except Exception as exc:  # scikit-learn itself fails on the bare class
        print(f"skipped {path}: {exc}"[:200], file=sys.stderr)
        return
    xs, ys = frames(), targets()
    tasks = ["binary", "multiclass"] if is_classifier(cls()) else ["regression"]
    for variant in param_variants(cls):
        onehot = variant.pop("__onehot__", None)
        for task in tasks:
            # Counts and a single column only when plain numbers fail: they are for the naive
            # Bayes models and isotonic regression.
            fitted_plain = False
            for frame_name, X in xs.items():
                if frame_name in ("counts", "single") and fitted_plain:
                    continue
                preprocessing = frame_name == "mixed"
                numeric = [c for c in X if X[c].dtype.kind in "fi"]
                try:
                    pipe = build_pipeline(
                        cls,
                        {**fast(cls), **variant},
                        preprocessing=preprocessing,
                        numeric=numeric,
                        categorical=[c for c in X if c not in numeric],
                    )
                    if onehot and preprocessing:
                        pipe.set_params(
                            **{
                                f"preprocess__categorical__onehot__{k}": v
                                for k, v in onehot.items()
                            }
                        )
                    pipe.fit(X, ys[task])
                except Exception:
                    continue  # the trainer would fail this trial too
                fitted_plain = fitted_plain or frame_name == "numeric"
                yield f"{path} {variant} {frame_name} {task}", pipe


def is_class(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return False
    return isinstance(obj, type)


def discover_one(path: str) -> tuple[set[str], dict[str, str]]:
    """Types one estimator's models need, and the ones refused with the model that needed it."""
    found: set[str] = set()
    refused: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, model in fitted_models(path):
            for name in types_in(sio.dumps(model)):
                if name in BUILTINS or (name.split(".", 1)[0] in ROOTS and is_class(name)):
                    found.add(name)
                else:
                    refused.setdefault(name, label)
    print(f"{path}: {len(found)} types", file=sys.stderr, flush=True)
    return found, refused


def discover(names: list[str], jobs: int) -> tuple[set[str], dict[str, str]]:
    found: set[str] = set()
    refused: dict[str, str] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for one_found, one_refused in pool.map(discover_one, names):
            found |= one_found
            for name, label in one_refused.items():
                refused.setdefault(name, label)
    return found, refused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; write nothing")
    parser.add_argument(
        "--estimator", action="append", help="only these; add what they need to the file"
    )
    parser.add_argument("--jobs", type=int, default=2, help="processes fitting in parallel")
    args = parser.parse_args()
    names = args.estimator or sorted(json.loads(CATALOGUE.read_text())["estimators"])
    found, refused = discover(names, args.jobs)
    for name, label in sorted(refused.items()):
        print(f"not trusted: {name} (needed by {label})", file=sys.stderr)
    listed = set(json.loads(OUT.read_text())["types"]) if OUT.exists() else set()
    if args.check:
        missing = sorted(found - listed)
        for name in missing:
            print(f"missing from {OUT.name}: {name}", file=sys.stderr)
        return 1 if missing else 0
    doc = {
        "_doc": "Written by hack/gen_trusted_types.py; reviewed. Every class a model file may "
        "hold (skops' own defaults are not relied on). Never a function.",
        "versions": {
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "skops": skops.__version__,
        },
        "types": sorted(found | listed if args.estimator else found),
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(doc['types'])} types -> {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
