"""Spark models for tests/test_spark.py: trained pipelines, and a ModelAdapter that uses Spark the
way the platform's example does (``createDataFrame(df)``, then ``transform``)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import pandas as pd
from model_fixtures import save
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import OneHotEncoder, StringIndexer, VectorAssembler
from pyspark.ml.regression import LinearRegression
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from liveml_ext import Column, ModelAdapter, ModelApi, Tabular
from liveml_runtime.schema import infer_columns
from liveml_runtime.spark_frames import to_spark

log = logging.getLogger("spark-model")
FEATURES = ["house-location", "bedrooms", "bathrooms"]


def house_frame(reference: Any, n: int = 400, seed: int = 0) -> pd.DataFrame:
    """The reference house frame (tests/conftest.py's reference module) with its price."""
    frame, price = reference.training_frame(n, seed)
    return frame.assign(price=price)


def _prep() -> list[Any]:
    return [StringIndexer(inputCol="house-location", outputCol="location_index",
                          handleInvalid="keep"),
            OneHotEncoder(inputCols=["location_index"], outputCols=["location_vector"]),
            VectorAssembler(inputCols=["location_vector", "bedrooms", "bathrooms"],
                            outputCol="features")]


def spark_frame(spark: SparkSession, frame: pd.DataFrame) -> Any:
    return to_spark(spark, frame, infer_columns(frame))


def train_regression(spark: SparkSession, frame: pd.DataFrame, reg: float = 0.0) -> Any:
    """StringIndexer + OneHotEncoder + VectorAssembler + LinearRegression on the house frame."""
    stages = [*_prep(), LinearRegression(labelCol="price", regParam=reg)]
    return Pipeline(stages=stages).fit(spark_frame(spark, frame))


def train_classifier(spark: SparkSession, frame: pd.DataFrame) -> Any:
    """A LogisticRegression on the same features: is the house dearer than the median?"""
    labelled = frame.assign(dear=(frame["price"] > frame["price"].median()).astype(float))
    stages = [*_prep(), LogisticRegression(labelCol="dear", maxIter=20)]
    return Pipeline(stages=stages).fit(spark_frame(spark, labelled.drop(columns="price")))


class SparkScaler(ModelAdapter):
    """A ModelAdapter that uses Spark itself, as in the platform's example."""

    batchable = True

    def api(self) -> ModelApi:
        return ModelApi(inputs=[Tabular("input_df", [Column("x", float)])],
                        outputs=[Tabular("output_df")])

    def load(self) -> None:
        spark = SparkSession.builder.getOrCreate()
        # a log4j2 line of the JVM's own: it becomes one of the replica's log records
        spark.sparkContext._jvm.org.apache.logging.log4j.LogManager.getLogger(
            "liveml.test.jvm").warn("the JVM of the spark scaler says hello")

    def predict(self, input_df: pd.DataFrame) -> pd.DataFrame:
        spark = SparkSession.builder.getOrCreate()
        frame = spark.createDataFrame(input_df)
        log.info("spark scaler scaling %d rows", len(input_df))
        out = frame.withColumn("y", F.col("x") * 2) \
            .withColumn("master", F.lit(spark.sparkContext.master)) \
            .withColumn("timezone", F.lit(spark.conf.get("spark.sql.session.timeZone")))
        return out.toPandas()


def save_adapter(model: Any, path: Path) -> Path:
    """Saved with cloudpickle, this module by value (a replica has no tests folder)."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return save(model, path)
