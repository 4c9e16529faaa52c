"""Model adapters: the contract between a model and the replica that serves it.

A ``ModelAdapter`` declares its inputs and outputs in ``api()`` and computes them in ``predict``
(one output) or ``run_inference`` (several). A plain object with ``predict(DataFrame)`` — a
scikit-learn pipeline saved with joblib, say — is wrapped by ``EstimatorAdapter``: one tabular
input ``input_df`` and one tabular output ``output_df`` (the input rows plus ``prediction``).

A submission's input example (``schema.InputExample``) declares the input columns of a model that
does not (a plain class with ``predict(df)``), types those it declares untyped, and gives the
self-test its rows.
"""
from __future__ import annotations

import importlib.metadata as md
import platform
from typing import Any, ClassVar

import pandas as pd

from .api import Column, ModelApi, Parameter, Tabular, sample_value
from .errors import InferenceFailure, InvalidArgument, LiveMLError
from .frames import checked_rows, frame_rows, to_frame
from .schema import InputExample

#: What to do when liveml cannot tell a model's input columns (said at submission).
DECLARE_INPUTS = (
    "liveml cannot tell this model's input columns: it declares no schema (no api(), no "
    "feature_names_in_), and predicting on an empty frame raised {error}. Give an input example "
    "(`liveml submit OBJECTIVE MODEL --input-example FILE` with JSON rows or a CSV file; "
    "`lm.submit(objective, model, input_example=df)` in a notebook; `inputExample` rows in the "
    "REST request), or subclass liveml_runtime.ModelAdapter and declare its inputs in api()")


class ModelAdapter:
    """Base class for models with declared inputs and outputs.

    Override ``api()`` and either ``predict(**inputs)`` (a single output) or
    ``run_inference(inputs, outputs)`` (write each output with ``outputs[name].write(value)``).
    Tabular inputs arrive as pandas DataFrames, parameters as plain values.
    """

    #: True when each output row belongs to the input row at the same position, so that the
    #: replica may run concurrent requests as one batch.
    batchable: ClassVar[bool] = False

    def api(self) -> ModelApi | tuple[Any, Any]:
        raise NotImplementedError("a ModelAdapter must declare its api()")

    def load(self) -> None:
        """Called once in the replica before the self-test (start a Spark session, warm caches)."""

    def predict(self, *args: Any, **inputs: Any) -> Any:
        """The model's inputs by name (``api()``), its outputs returned."""
        raise NotImplementedError("override predict() or run_inference()")

    def run_inference(self, inputs: dict[str, Any], outputs: Outputs) -> None:
        result = self.predict(**inputs)
        names = outputs.names
        if len(names) == 1:
            outputs[names[0]].write(result)
        elif isinstance(result, dict):
            for name, value in result.items():
                outputs[name].write(value)
        else:
            raise TypeError("predict() of a model with several outputs must return a dict")

    def example_inputs(self) -> dict[str, Any] | None:
        """Inputs for the replica's self-test (v2 shape); None synthesizes one row from api()."""
        return None

    def accept_input_example(self, example: InputExample) -> None:
        """Called once, before ``api()``, when the submission has an input example.

        The default keeps ``api()`` as it is: the runner then fills the types of declared
        columns typed ``any`` (and the columns of a table that declares none) from the example.
        Adapters that build their schema from the example (a Spark model's) override this.
        """


class Output:
    def __init__(self, name: str) -> None:
        self.name = name
        self.value: Any = None
        self.written = False

    def write(self, value: Any) -> None:
        self.value, self.written = value, True


class Outputs(dict[str, "Output"]):
    """The outputs a ``run_inference`` call writes, by name (also as attributes)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__({n: Output(n) for n in names})
        self.names = names

    def __getattr__(self, name: str) -> Output:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __missing__(self, name: str) -> Output:
        raise KeyError(f"the model API declares no output {name!r}; it has {self.names}")


class EstimatorAdapter(ModelAdapter):
    """Wraps any object with ``predict(DataFrame)`` (scikit-learn estimators and pipelines)."""

    batchable = True

    def __init__(self, model: Any) -> None:
        self.model = model
        self._api = ModelApi(
            inputs=[Tabular("input_df", estimator_columns(model))],
            outputs=[Tabular("output_df", [])],
        )
        self._features = [c.name for c in self._table.columns]

    def api(self) -> ModelApi:
        return self._api

    @property
    def _table(self) -> Tabular:
        """The one input table (``input_df``)."""
        table = self._api.inputs[0]
        assert isinstance(table, Tabular)
        return table

    def accept_input_example(self, example: InputExample) -> None:
        """The example's columns (and types) become the input: all of them when the model has no
        ``feature_names_in_``, else its features, typed by the example."""
        given = {c.name: c for c in example.columns}
        if self._features:
            missing = [f for f in self._features if f not in given]
            if missing:
                raise InvalidArgument(
                    f"the input example has no column {', '.join(map(repr, missing))}, which "
                    f"the model was fitted on (its feature_names_in_: {self._features}); add "
                    "them to the example", field="inputExample", missingColumns=missing)
            columns = [given[f] for f in self._features]
        else:
            columns = list(example.columns)
        self._api = ModelApi(inputs=[Tabular("input_df", columns)], outputs=self._api.outputs)

    def predict(self, input_df: Any) -> Any:
        features = input_df
        if self._features and list(input_df.columns) != self._features:
            features = input_df[self._features]
        prediction = self.model.predict(features)
        out = input_df.copy(deep=False)
        if getattr(prediction, "ndim", 1) == 2 and prediction.shape[1] > 1:
            for i in range(prediction.shape[1]):
                out[f"prediction_{i}"] = prediction[:, i]
        else:
            out["prediction"] = prediction.reshape(-1) if hasattr(prediction, "reshape") else prediction
        return out

    def example_inputs(self) -> dict[str, Any]:
        cats = _categories(self.model)
        row = {c.name: cats.get(c.name, sample_value(c.type)) for c in self._table.columns}
        return {"input_df": [row]}


def _ct(model: Any) -> Any:
    """The first fitted ColumnTransformer in a model or pipeline, if any."""
    steps = [model]
    if hasattr(model, "steps"):
        steps += [s for _, s in model.steps]
    for step in steps:
        if hasattr(step, "transformers_"):
            return step
    return None


def _categories(model: Any) -> dict[str, Any]:
    """Column -> its first known category, for encoders inside a ColumnTransformer."""
    ct = _ct(model)
    out: dict[str, Any] = {}
    if ct is None:
        return out
    for _, transformer, cols in ct.transformers_:
        cats = getattr(transformer, "categories_", None)
        if cats is not None and isinstance(cols, (list, tuple)):
            for col, values in zip(cols, cats):
                if len(values):
                    value = values[0]
                    out[col] = value.item() if hasattr(value, "item") else value
    return out


def estimator_columns(model: Any) -> list[Column]:
    """Declared input columns of a fitted estimator: ``feature_names_in_`` with inferred types.

    Columns fed to a categorical encoder with string categories are strings; the rest of a
    scikit-learn model's features are numbers.
    """
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return []
    cats = _categories(model)
    return [Column(str(n), "string" if isinstance(cats.get(str(n)), str) else
                   ("any" if str(n) in cats else "double")) for n in names]


def with_example(api: ModelApi, example: InputExample) -> ModelApi:
    """``api`` with its one tabular input's columns typed by ``example``: all the example's
    columns when it declares none, else the declared ones, ``any`` types filled in."""
    tables = api.tabular_inputs
    if len(tables) != 1:
        raise InvalidArgument(
            f"an input example describes one table, and this model has {len(tables)} tabular "
            "inputs; give the self-test's inputs with example_inputs() in its ModelAdapter",
            field="inputExample", inputs=[t.name for t in tables])
    table = tables[0]
    given = {c.name: c for c in example.columns}
    if not table.columns:
        columns = list(example.columns)
    else:
        missing = [c.name for c in table.columns if c.name not in given]
        if missing:
            raise InvalidArgument(
                f"the input example has no column {', '.join(map(repr, missing))} of input "
                f"{table.name!r}, which the model's api() declares; add them to the example",
                field="inputExample", missingColumns=missing)
        columns = [Column(c.name, given[c.name].type, c.required, given[c.name].precision,
                          given[c.name].scale, given[c.name].items) if c.type == "any" else c
                   for c in table.columns]
    inputs = [Tabular(p.name, columns) if p is table else p for p in api.inputs]
    return ModelApi(inputs=inputs, outputs=api.outputs)


class ModelRunner:
    """Runs an adapter on decoded inputs and returns its outputs by name.

    With an ``example`` (the submission's input example), the API's input columns come from it
    (see ``with_example``) and the self-test runs on its rows.
    """

    def __init__(self, adapter: ModelAdapter, example: InputExample | None = None) -> None:
        self.adapter = adapter
        self.example = example
        if example is not None:
            adapter.accept_input_example(example)
        api = ModelApi.coerce(adapter.api())
        self.api = with_example(api, example) if example is not None else api
        self.batchable = bool(adapter.batchable) and self.api.single_tabular

    @property
    def undeclared(self) -> bool:
        """True when nothing says what the model's one table holds (no columns, no example)."""
        tables = self.api.tabular_inputs
        return self.example is None and len(tables) == 1 and not tables[0].columns

    def to_frames(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Decoded inputs -> tables as DataFrames typed by the API (``frames.to_frame``)."""
        tables = {t.name: t for t in self.api.tabular_inputs}
        out = {}
        for name, value in inputs.items():
            table = tables.get(name)
            if table is None or hasattr(value, "columns"):
                out[name] = value
            else:
                out[name] = to_frame(table.columns, value)
        return out

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Inputs (DataFrames and parameter values) -> outputs by name (raw model values)."""
        outputs = Outputs([p.name for p in self.api.outputs])
        try:
            self.adapter.run_inference(inputs, outputs)
        except LiveMLError:  # a precise error of the platform's (a value that does not fit)
            raise
        except Exception as exc:  # the model's own failure, reported to the caller
            raise InferenceFailure(f"the model raised {type(exc).__name__}: {exc}",
                                   exceptionType=type(exc).__name__) from exc
        missing = [n for n, o in outputs.items() if not o.written]
        if missing:
            raise InferenceFailure(f"the model wrote no value for outputs {missing}")
        return {n: o.value for n, o in outputs.items()}

    def self_test_inputs(self) -> dict[str, Any]:
        if self.example is not None:
            return self.api.decode_v2({self.api.tabular_inputs[0].name: self.example.rows})
        example = self.adapter.example_inputs()
        if example is None:
            example = {t.name: [{c.name: sample_value(c.type) for c in t.columns}]
                       for t in self.api.tabular_inputs}
        return {**self.api.decode_v2(example)}

    def self_test(self) -> dict[str, Any]:
        """Run the model once on the example (or synthesized) inputs; a model whose inputs
        nothing declares and that fails on an empty frame is told how to declare them."""
        try:
            return self.infer(self.to_frames(self.self_test_inputs()))
        except InferenceFailure as err:
            if self.undeclared:
                raise InvalidArgument(DECLARE_INPUTS.format(error=err.message.removeprefix(
                    "the model raised ")), reason="inputsUndeclared",
                    **{k: v for k, v in err.parameters.items() if k == "exceptionType"}) from err
            raise


def encode(value: Any) -> Any:
    """A model output -> JSON-ready value (DataFrames become lists of row objects; a pandas
    one holding +-inf is refused: ``frames.checked_rows``)."""
    if isinstance(value, pd.DataFrame):
        return checked_rows(value)
    if hasattr(value, "to_dict") and hasattr(value, "columns"):
        return frame_rows(value)
    if hasattr(value, "to_list"):
        return value.to_list()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def wrap(model: Any) -> ModelAdapter:
    if isinstance(model, ModelAdapter):
        return model
    if callable(getattr(model, "predict", None)):
        return EstimatorAdapter(model)
    raise InvalidArgument(
        f"a {type(model).__name__} is not a model: give a ModelAdapter or an object with "
        "predict(DataFrame)", modelType=type(model).__name__)


def load_model(path: str) -> ModelAdapter:
    """Load a joblib, pickle or cloudpickle file and wrap it as a ModelAdapter; a zip is a saved
    Spark model (``spark_model``)."""
    import zipfile

    import joblib

    if zipfile.is_zipfile(path):
        from .spark_model import is_spark_artifact, load_spark_artifact

        if not is_spark_artifact(path):
            raise InvalidArgument("the zip holds no saved Spark model (metadata/part-00000): "
                                  "zip the folder model.save(path) wrote")
        return load_spark_artifact(path)

    try:
        model = joblib.load(path)
    except Exception as exc:
        raise InvalidArgument(f"cannot load the model file: {type(exc).__name__}: {exc}",
                              exceptionType=type(exc).__name__) from exc
    return wrap(model)


def uses_spark(adapter: ModelAdapter) -> bool:
    """True when a model needs the replica's local Spark: ``uses_spark = True`` on its class, or
    pyspark imported by loading it (a class that refers to pyspark objects brings it along)."""
    import sys

    flag = getattr(adapter, "uses_spark", None)
    if flag is not None:
        return bool(flag)
    return "pyspark" in sys.modules


def prepare(adapter: ModelAdapter, threads: int = 1) -> None:
    """Start what a model needs (local Spark, ``threads`` cores), then its own ``load()``."""
    if uses_spark(adapter):
        from .spark import session

        session(threads)
    adapter.load()


def requirements(modules: set[str]) -> dict[str, str]:
    """Top-level module names -> {distribution: version} of the installed distributions."""
    dists = md.packages_distributions()
    out = {}
    for mod in sorted(modules):
        for dist in dists.get(mod, []):
            try:
                out[dist] = md.version(dist)
            except md.PackageNotFoundError:
                pass
    return out


def model_modules(model: Any) -> set[str]:
    """Top-level modules of every object a model is made of (found by pickling it again)."""
    import io

    import cloudpickle

    found: set[str] = set()

    class Recorder(cloudpickle.CloudPickler):  # type: ignore[misc]  # cloudpickle has no types
        def reducer_override(self, obj: Any) -> Any:
            kind = obj if isinstance(obj, type) else type(obj)
            found.add((getattr(kind, "__module__", None) or "builtins").split(".")[0])
            return super().reducer_override(obj)

    try:
        Recorder(io.BytesIO(), protocol=5).dump(model)
    except Exception:  # noqa: BLE001 - best effort: what was seen so far still counts
        pass
    return found


def inspect_artifact(path: str, example: InputExample | None = None) -> dict[str, Any]:
    """Load an artifact, self-test it (on ``example`` when given) and describe it: its API, the
    packages it is made of, and the input example it was submitted with."""
    adapter = load_model(path)
    model = adapter.model if isinstance(adapter, EstimatorAdapter) else adapter
    modules = model_modules(model) | set(getattr(adapter, "modules", ()))
    modules -= {"liveml_runtime", "liveml_ext", "__main__", "builtins"}
    runner = ModelRunner(adapter, example)
    prepare(adapter)  # local Spark first, for a model that needs it; then its load()
    runner.self_test()
    doc = {
        "api": runner.api.to_dict(),
        "adapter": f"{type(adapter).__module__}.{type(adapter).__qualname__}",
        "requirements": requirements(modules),
        "python": platform.python_version(),
    }
    if example is not None:
        doc["inputExample"] = example.to_dict()
    return doc


__all__ = ["Column", "EstimatorAdapter", "InputExample", "ModelAdapter", "ModelApi", "ModelRunner",
           "Outputs", "Parameter", "Tabular", "encode", "inspect_artifact", "load_model",
           "prepare", "with_example", "wrap"]
