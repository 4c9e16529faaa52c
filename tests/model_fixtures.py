"""Models for the tests, saved with cloudpickle by value so a replica needs no test module."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cloudpickle
import pandas as pd

from liveml_ext import Column, ModelAdapter, ModelApi, Parameter, Tabular

log = logging.getLogger("model-logger")


def save(model: Any, path: Path) -> Path:
    import sys

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with open(path, "wb") as fh:
        cloudpickle.dump(model, fh)
    return path


class Offset:
    """A fitted pipeline whose predictions are moved by ``offset`` (a distinguishable release)."""

    def __init__(self, model: Any, offset: float) -> None:
        self.model, self.offset = model, offset

    @property
    def feature_names_in_(self) -> Any:
        return self.model.feature_names_in_

    @property
    def steps(self) -> Any:
        return self.model.steps

    def predict(self, frame: pd.DataFrame) -> Any:
        return self.model.predict(frame) + self.offset


class Scaled(Offset):
    """A fitted pipeline whose predictions are multiplied by ``factor`` (``offset`` here)."""

    def predict(self, frame: pd.DataFrame) -> Any:
        return self.model.predict(frame) * self.offset


class AlwaysFails(Offset):
    """A release that loads and declares its inputs as the pipeline does and passes the
    replica's self-test (its first call in a process), then raises on every query."""

    def predict(self, frame: pd.DataFrame) -> Any:
        if not getattr(self, "tested", False):
            self.tested = True
            return self.model.predict(frame)
        raise RuntimeError("this release fails on every query")


class Picky(ModelAdapter):
    """Raises on negative input, the way a model rejects what it cannot handle."""

    def api(self) -> ModelApi:
        return ModelApi(inputs=[Tabular("input_df", [Column("x", float)])],
                        outputs=[Tabular("output_df")])

    def predict(self, input_df: pd.DataFrame) -> pd.DataFrame:
        if (input_df["x"] < 0).any():
            raise ValueError("x must not be negative")
        log.info("predicting %d rows", len(input_df))
        return input_df.assign(y=input_df["x"] * 2)


class PriceAndCount(ModelAdapter):
    """Two inputs (a table and a parameter) and two outputs: the multi I/O shape."""

    def api(self) -> ModelApi:
        return ModelApi(
            inputs=[Tabular("houses", [Column("price", float), Column("city", str)]),
                    Parameter("discount", float, default=0.0)],
            outputs=[Tabular("priced"), Parameter("count", int)],
        )

    def run_inference(self, inputs: dict[str, Any], outputs: Any) -> None:
        houses = inputs["houses"]
        outputs.priced.write(houses.assign(final=houses["price"] * (1 - inputs["discount"])))
        outputs["count"].write(len(houses))


class BrokenAtLoad(ModelAdapter):
    """Its self-test fails: a release that never becomes ready."""

    def api(self) -> ModelApi:
        return ModelApi(inputs=[Tabular("input_df", [Column("x", float)])],
                        outputs=[Tabular("output_df")])

    def predict(self, input_df: pd.DataFrame) -> pd.DataFrame:
        raise RuntimeError("weights are corrupt")


class EnvEcho(ModelAdapter):
    """Echoes an environment variable of its replica; its load() fails when FAIL_AT_LOAD is set."""

    batchable = True

    def api(self) -> ModelApi:
        return ModelApi(inputs=[Tabular("input_df", [Column("x", float)])],
                        outputs=[Tabular("output_df")])

    def load(self) -> None:
        import os
        import time

        time.sleep(float(os.environ.get("SLOW_LOAD", "0")))
        if os.environ.get("FAIL_AT_LOAD"):
            raise RuntimeError("FAIL_AT_LOAD is set: refusing to start")

    def predict(self, input_df: pd.DataFrame) -> pd.DataFrame:
        import os

        return input_df.assign(greeting=os.environ.get("GREETING", ""), pid=os.getpid())


class Slow(ModelAdapter):
    """Takes ``seconds`` per call and is not batchable: for capacity and autoscaling tests."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def api(self) -> ModelApi:
        return ModelApi(inputs=[Tabular("input_df", [Column("x", float)])],
                        outputs=[Tabular("output_df")])

    def predict(self, input_df: pd.DataFrame) -> pd.DataFrame:
        import time

        time.sleep(self.seconds)
        return input_df


class PlainPricer:
    """A plain class with ``predict(df)`` and nothing that declares its inputs (no api(), no
    ``feature_names_in_``): liveml needs an input example to serve it."""

    def predict(self, frame: pd.DataFrame) -> Any:
        price = frame["bedrooms"] * 100_000 + frame["bathrooms"] * 25_000
        return price.to_numpy(dtype=float, na_value=float("nan"))


class DtypeEcho:
    """A plain class answering, per row, the dtype of each column of the frame it was given and
    the Python type of that row's value: ``"n=Int64:int64;t=datetime64[ns, UTC]:Timestamp"``."""

    def predict(self, frame: pd.DataFrame) -> Any:
        import numpy as np

        return np.array([";".join(f"{c}={frame[c].dtype}:{type(frame[c].iloc[i]).__name__}"
                                  for c in frame.columns) for i in range(len(frame))],
                        dtype=object)
