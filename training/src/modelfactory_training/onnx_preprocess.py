"""The trainer's preprocessing (pipeline.build_preprocessor) as one ONNX block.

skl2onnx converts scikit-learn's imputers, scaler and one-hot encoder one by one, in float32,
without infrequent categories and without NaN as a missing category. This block takes the
fitted ColumnTransformer's constants and builds what it computes, exactly:

- numbers (float64 inputs): NaN -> the imputer's median, minus the mean, divided by the scale,
  all in float64 as scikit-learn does, then float32, which is what the estimator gets (trees
  compare float32; a value rounded otherwise may cross a split between two training values one
  float32 step apart);
- categories (text inputs, MISSING_CATEGORY for a missing one): one LabelEncoder maps the
  missing marker to the imputer's value, each category with a column of its own to itself and
  anything else (infrequent or never seen) to INFREQUENT; then a one-hot over the categories,
  with INFREQUENT last when the encoder has an infrequent column (otherwise all zeros, as
  scikit-learn's "infrequent_if_exist" does when there is none).

The block's output is the float32 matrix [rows, encoded columns], in the ColumnTransformer's
order; every estimator converter takes it as it takes a float matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelfactory_artifacts.metadata import FeatureInfo
from modelfactory_artifacts.onnx_model import MISSING_CATEGORY

INFREQUENT = "\x00infrequent"


class NotConvertible(Exception):
    """The pipeline has no faithful ONNX form; the message says why."""


@dataclass(frozen=True)
class NumericBlock:
    inputs: list[int]  # positions among the graph's inputs
    fill: np.ndarray
    mean: np.ndarray | None
    scale: np.ndarray | None


@dataclass(frozen=True)
class CategoryColumn:
    input: int
    fill: str  # the imputer's value, as text
    columns: list[str]  # categories with a column of their own, in output order
    infrequent: bool  # an infrequent column follows them


class Preprocess(TransformerMixin, BaseEstimator):
    """Stands in for the fitted ColumnTransformer in the copy that is converted."""

    def __init__(self, numeric: NumericBlock | None, categories: list[CategoryColumn]) -> None:
        self.numeric = numeric
        self.categories = categories

    @property
    def width(self) -> int:
        numbers = len(self.numeric.inputs) if self.numeric else 0
        return numbers + sum(len(c.columns) + int(c.infrequent) for c in self.categories)


def _steps(branch: Any, names: tuple[str, str], kinds: tuple[type, type]) -> tuple[Any, Any]:
    steps = dict(branch.steps) if isinstance(branch, Pipeline) else {}
    found = tuple(steps.get(n) for n in names)
    if len(steps) != 2 or not all(isinstance(s, k) for s, k in zip(found, kinds, strict=True)):
        raise NotConvertible(f"preprocessing branch {branch!r} is not {' then '.join(names)}")
    return found[0], found[1]


def _numeric(branch: Any, positions: list[int]) -> NumericBlock:
    imputer, scaler = _steps(branch, ("impute", "scale"), (SimpleImputer, StandardScaler))
    fill = np.asarray(imputer.statistics_, dtype=np.float64)
    if np.isnan(fill).any():  # the imputer dropped a column that was all missing
        raise NotConvertible("a numeric feature had no value in the training data")
    return NumericBlock(positions, fill, scaler.mean_, scaler.scale_)


def _categories(branch: Any, positions: list[int]) -> list[CategoryColumn]:
    imputer, encoder = _steps(branch, ("impute", "onehot"), (SimpleImputer, OneHotEncoder))
    if encoder.drop is not None:
        raise NotConvertible("OneHotEncoder with drop set")
    rare_lists = getattr(encoder, "infrequent_categories_", None)
    out = []
    for i, (position, cats) in enumerate(zip(positions, encoder.categories_, strict=True)):
        rare = rare_lists[i] if rare_lists is not None else None
        rare_text = {str(c) for c in rare} if rare is not None else set()
        out.append(
            CategoryColumn(
                input=position,
                fill=str(imputer.statistics_[i]),
                columns=[str(c) for c in cats if str(c) not in rare_text],
                infrequent=bool(rare_text),
            )
        )
    return out


def from_column_transformer(pre: ColumnTransformer, features: list[FeatureInfo]) -> Preprocess:
    position = {f.name: i for i, f in enumerate(features)}
    numeric: NumericBlock | None = None
    categories: list[CategoryColumn] = []
    for name, branch, columns in pre.transformers_:
        if branch == "drop" or name == "remainder":
            continue
        positions = [position[str(c)] for c in columns]
        if name == "numeric":
            numeric = _numeric(branch, positions)
        elif name == "categorical":
            categories = _categories(branch, positions)
        else:
            raise NotConvertible(f"unknown preprocessing branch {name!r}")
    return Preprocess(numeric, categories)


# ---------------------------------------------------------------------- skl2onnx hooks
ALIAS = "ModelFactoryPreprocess"


def parse(scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None) -> list[Any]:
    """Declares the block's output float32 from the start: skl2onnx would give it the type of
    the first input (float64), and the estimator's converter would follow it."""
    from skl2onnx.common.data_types import FloatTensorType

    operator = scope.declare_local_operator(ALIAS, model)
    operator.inputs = list(inputs)
    output = scope.declare_local_variable("preprocessed", FloatTensorType())
    operator.outputs.append(output)
    return list(operator.outputs)


def shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType

    rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([rows, operator.raw_operator.width])


def convert(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto

    block: Preprocess = operator.raw_operator
    inputs = [v.full_name for v in operator.inputs]

    def name(hint: str) -> str:
        return str(scope.get_unique_variable_name(hint))

    def node(op: str, args: list[str], hint: str, domain: str = "", **attrs: Any) -> str:
        out = name(hint)
        container.add_node(
            op, args, out, op_domain=domain, name=scope.get_unique_operator_name(op), **attrs
        )
        return out

    def doubles(hint: str, values: np.ndarray) -> str:
        const = name(hint)
        container.add_initializer(
            const, TensorProto.DOUBLE, [len(values)], np.asarray(values, dtype=np.float64).tolist()
        )
        return const

    parts: list[str] = []
    numeric = block.numeric
    if numeric is not None:
        x = inputs[numeric.inputs[0]]
        if len(numeric.inputs) > 1:
            x = node("Concat", [inputs[i] for i in numeric.inputs], "numbers", axis=1)
        x = node(
            "Where", [node("IsNaN", [x], "missing"), doubles("median", numeric.fill), x], "imputed"
        )
        if numeric.mean is not None:
            x = node("Sub", [x, doubles("mean", numeric.mean)], "centred")
        if numeric.scale is not None:
            x = node("Div", [x, doubles("scale", numeric.scale)], "scaled")
        parts.append(node("Cast", [x], "numbers32", to=TensorProto.FLOAT))
    for column in block.categories:
        fill = column.fill if column.fill in column.columns else INFREQUENT
        keys = [*column.columns, MISSING_CATEGORY]
        mapped = node(
            "LabelEncoder",
            [inputs[column.input]],
            "category",
            domain="ai.onnx.ml",
            keys_strings=keys,
            values_strings=[*column.columns, fill],
            default_string=INFREQUENT,
        )
        cats = [*column.columns, *([INFREQUENT] if column.infrequent else [])]
        hot = node(
            "OneHotEncoder", [mapped], "one_hot", domain="ai.onnx.ml", cats_strings=cats, zeros=1
        )  # [rows, 1, len(cats)]
        shape_const = name("shape")
        container.add_initializer(shape_const, TensorProto.INT64, [2], [-1, len(cats)])
        parts.append(node("Reshape", [hot, shape_const], "one_hot_2d"))
    output = operator.outputs[0].full_name
    if len(parts) == 1:
        container.add_node(
            "Identity", parts, output, name=scope.get_unique_operator_name("Identity")
        )
    else:
        container.add_node(
            "Concat", parts, output, axis=1, name=scope.get_unique_operator_name("Concat")
        )
