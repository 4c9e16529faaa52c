"""Saved ``pyspark.ml`` models as liveml artifacts, and the adapter that serves them.

An artifact is a zip of the directory ``model.save(path)`` wrote (``metadata/part-00000`` names
its class) plus ``liveml-spark.json``: the declared input columns, a few example rows (the
self-test's input) and the output columns to answer with. ``SparkModelAdapter`` converts the
input rows to a Spark DataFrame of exactly the declared schema, runs one ``transform`` per batch,
and answers the input columns plus the model's own outputs (``prediction``, and ``probability``
for classifiers) unless the submission named its ``outputColumns``; vectors become arrays.
"""
from __future__ import annotations

import atexit
import importlib
import io
import json
import logging
import shutil
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

from .adapter import ModelAdapter
from .api import Column, ModelApi, Tabular
from .errors import InferenceFailure, InvalidArgument, LiveMLError

log = logging.getLogger("liveml.spark")

MANIFEST = "liveml-spark.json"
METADATA = "metadata/part-00000"  # Spark 4 writes metadata/part-00000-<uuid>-c000.txt


def _metadata_at(name: str) -> str | None:
    """The model folder of a metadata file's path ('' for the root), or None."""
    folder, _, base = name.rpartition("/")
    if not (folder == "metadata" or folder.endswith("/metadata")) or not base.startswith(
            "part-00000"):
        return None
    return folder[: -len("metadata")]


def _model_root(names: list[str]) -> str | None:
    """The folder (in a zip's names) holding the top-level model's metadata, '' for the root."""
    roots = [r for r in map(_metadata_at, names) if r is not None]
    return min(roots, key=lambda r: r.count("/")) if roots else None


def _metadata_file(directory: Path) -> Path | None:
    found = sorted((directory / "metadata").glob("part-00000*"))
    return found[0] if found else None


def is_spark_artifact(path: str | Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return _model_root(zf.namelist()) is not None


def _zip_dir(directory: Path, manifest: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.name.endswith(".crc") and path.name != MANIFEST:
                zf.write(path, path.relative_to(directory).as_posix())
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1))
    return buffer.getvalue()


def manifest(input_example: Any, output_columns: list[str] | None = None) -> dict[str, Any]:
    """What the artifact records besides the model: the example's columns (``schema``), and
    a few of its rows."""
    from .schema import InputExample
    from .spark_frames import check_columns

    if input_example is None:
        raise InvalidArgument(
            "a Spark model needs its input columns: pass an input example (liveml submit "
            "OBJECTIVE MODEL_DIR --input-example rows.json|rows.csv, or lm.submit(objective, "
            "model, input_example=df)), or subclass ModelAdapter and declare api()",
            field="inputExample")
    example = InputExample.of(input_example)
    check_columns(example.columns)
    return {"format": "spark-ml", "inputs": [asdict(c) for c in example.columns],
            "example": example.rows[:5],
            "outputColumns": list(output_columns) if output_columns else None}


def pack(source: str | Path, input_example: Any = None,
         output_columns: list[str] | None = None) -> bytes:
    """A saved model directory (or a zip of one) -> artifact bytes with the manifest."""
    source = Path(source)
    doc = manifest(input_example, output_columns)
    with tempfile.TemporaryDirectory(prefix="liveml-spark-pack-") as tmp:
        if source.is_dir():
            root = source
        elif zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as zf:
                inner = _model_root(zf.namelist())
                if inner is None:
                    raise InvalidArgument(f"{source} holds no saved Spark model ({METADATA})")
                zf.extractall(tmp)
            root = Path(tmp) / inner
        else:
            raise InvalidArgument(f"{source} is neither a saved Spark model directory nor a zip")
        if _metadata_file(root) is None:
            raise InvalidArgument(f"{source} is not a saved Spark model: it has no {METADATA} "
                                  "(save it with model.write().overwrite().save(path))")
        return _zip_dir(root, doc)


def pack_model(model: Any, input_example: Any = None,
               output_columns: list[str] | None = None) -> bytes:
    """A fitted pyspark.ml model in memory -> artifact bytes (saved to a temporary folder)."""
    doc = manifest(input_example, output_columns)  # fail before saving
    with tempfile.TemporaryDirectory(prefix="liveml-spark-save-") as tmp:
        target = Path(tmp) / "model"
        model.write().overwrite().save(str(target))
        return _zip_dir(target, doc)


def is_spark_model(obj: Any) -> bool:
    """True for a pyspark.ml Transformer (a fitted model or pipeline), without importing pyspark."""
    return any(k.__module__.startswith("pyspark.ml") and k.__name__ == "Transformer"
               for k in type(obj).__mro__)


def python_class(java_class: str) -> Any:
    """``org.apache.spark.ml.regression.LinearRegressionModel`` -> its pyspark class."""
    name = java_class.replace("org.apache.spark.", "pyspark.", 1)
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        raise InvalidArgument(f"the saved Spark model is a {java_class}, which pyspark cannot "
                              "load here", modelClass=java_class) from None


def load_spark_artifact(path: str) -> SparkModelAdapter:
    """Unzip an artifact into a temporary folder (removed at exit) and wrap it."""
    target = Path(tempfile.mkdtemp(prefix="liveml-spark-model-"))
    atexit.register(shutil.rmtree, target, True)
    with zipfile.ZipFile(path) as zf:
        root = _model_root(zf.namelist())
        zf.extractall(target)
        try:
            doc = json.loads(zf.read(MANIFEST))
        except KeyError:
            doc = {}
    return SparkModelAdapter(str(target / (root or "")), doc)


class SparkModelAdapter(ModelAdapter):
    """Serves a saved pyspark.ml model on the replica's local Spark session."""

    batchable = True
    uses_spark = True
    modules: ClassVar[tuple[str, ...]] = ("pyspark", "pyarrow")

    def __init__(self, directory: str, doc: dict[str, Any]) -> None:
        from .spark_frames import check_columns

        self.directory = directory
        found = _metadata_file(Path(directory))
        if found is None:
            raise InvalidArgument(f"the Spark artifact has no {METADATA}: zip the folder "
                                  "model.save(path) wrote")
        with open(found) as fh:
            self.metadata = json.loads(fh.readline())
        self.java_class = self.metadata.get("class", "")
        self.columns = [Column(**c) for c in doc.get("inputs") or []]
        if not self.columns:
            raise InvalidArgument(
                "this Spark model was submitted without its input columns: submit it again "
                "with --input-example FILE (liveml submit) or input_example=df (lm.submit)",
                field="inputExample")
        check_columns(self.columns)
        self.example = doc.get("example") or []
        self.output_columns: list[str] | None = doc.get("outputColumns")
        self.model: Any = None
        self._java_model: Any = None
        self.spark: Any = None
        self._outputs: list[str] | None = None

    def api(self) -> ModelApi:
        return ModelApi(inputs=[Tabular("input_df", self.columns)],
                        outputs=[Tabular("output_df", [])])

    def load(self) -> None:
        from .spark import session

        self.spark = session()
        self.model = python_class(self.java_class).load(self.directory)
        # the JVM's own model, its parameters copied once: pyspark's transform() copies every
        # stage's parameters over py4j on each call (about 150 ms for a 4-stage pipeline)
        to_java = getattr(self.model, "_to_java", None)
        self._java_model = to_java() if callable(to_java) else None

    def transform(self, data: Any) -> Any:
        """One Spark ``transform`` of a DataFrame (the JVM's model in one call when there is one)."""
        if self._java_model is None:
            return self.model.transform(data)
        from pyspark.sql import DataFrame

        return DataFrame(self._java_model.transform(data._jdf), data.sparkSession)

    def _answer_columns(self, frame: Any) -> list[str]:
        """Input columns, then the outputs asked for (or the final stage's own outputs)."""
        inputs = [c.name for c in self.columns]
        if self._outputs is None:
            added = [c for c in frame.columns if c not in inputs]
            if self.output_columns:
                unknown = [c for c in self.output_columns if c not in frame.columns]
                if unknown:
                    raise InvalidArgument(f"the model has no output columns {unknown}; it "
                                          f"adds {added}", outputColumns=self.output_columns)
                self._outputs = [c for c in self.output_columns if c not in inputs]
            else:
                final = self.model
                while hasattr(final, "stages") and final.stages:
                    final = final.stages[-1]
                own = [final.getOrDefault(p) for p in ("predictionCol", "probabilityCol")
                       if final.hasParam(p) and final.isDefined(p)]
                own = [c for c in own if c in added]
                if not own:
                    own = [final.getOrDefault(p) for p in ("outputCol",)
                           if final.hasParam(p) and final.isDefined(p)]
                    own = [c for c in own if c in added] or added
                self._outputs = own
        return inputs + self._outputs

    def predict(self, input_df: Any) -> Any:
        from .spark_frames import to_pandas, to_spark

        data = to_spark(self.spark, input_df, self.columns)  # a value that does not fit: a 400
        try:
            frame = self.transform(data)
            return to_pandas(frame, self._answer_columns(frame))
        except LiveMLError:
            raise
        except Exception as exc:  # the JVM's error: its message, not its stack trace
            log.warning("The Spark model failed: %s", exc)
            raise InferenceFailure(f"the Spark model raised {type(exc).__name__}: "
                                   f"{short_message(exc)}",
                                   exceptionType=type(exc).__name__) from None

    def example_inputs(self) -> dict[str, Any]:
        return {"input_df": self.example[:5]}


def short_message(exc: BaseException, limit: int = 600) -> str:
    """An exception's message without a JVM stack trace: the Java root cause's own line (a
    Py4JJavaError wraps it in ``awaitResult`` and the like), else the first lines of the text."""
    text = str(exc)
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    try:
        while java is not None:
            text = str(java.toString())
            java = java.getCause()
    except Exception:  # noqa: BLE001 - the gateway may be gone: keep what was read
        pass
    lines = []
    for line in str(text).splitlines():
        if line.lstrip().startswith("at ") or "JVM stacktrace" in line:
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines)[:limit]
