"""Plain-Python parts without a server: codecs, adapters, batching, profiles, layering."""
from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import joblib
import pandas as pd
import pytest
from conftest import ROW, reference_module

from liveml_ext.core.errors import InvalidArgument
from liveml_ext.core.profiles import ProfileCatalog
from liveml_ext.core.units import parse_memory
from liveml_runtime import Column, ModelApi, Parameter, Tabular
from liveml_runtime.adapter import EstimatorAdapter, ModelRunner, inspect_artifact, wrap
from liveml_runtime.batching import InferenceQueue
from liveml_runtime.errors import LiveMLError

API = ModelApi(inputs=[Tabular("t", [Column("a", int), Column("b", str, required=False)]),
                       Parameter("k", float, default=1.5)],
               outputs=[Tabular("out")])


def kind(fn, *args) -> dict:
    with pytest.raises(LiveMLError) as err:
        fn(*args)
    assert err.value.status == 400 and err.value.name == "InferenceInvalidInput"
    return err.value.parameters["errorType"]


def test_decode_v1_and_v2_accept_matching_bodies():
    assert API.decode_v1({"requestData": [{"a": 1}], "requestParams": {"k": 2}}) == \
        {"t": [{"a": 1}], "k": 2.0}
    assert API.decode_v2({"t": [{"a": 1, "b": "x"}]}) == {"t": [{"a": 1, "b": "x"}], "k": 1.5}


def test_decode_names_the_offending_input_or_column():
    assert kind(API.decode_v1, {"requestData": [{"b": "x"}]}) == \
        {"type": "requiredValueMissing", "input": "t", "column": "a", "row": 0}
    assert kind(API.decode_v1, {"requestData": [{"a": 1}, {"a": 1.5}]})["row"] == 1
    assert kind(API.decode_v1, {"requestData": [{"a": True}]})["type"] == "typeMismatch"
    assert kind(API.decode_v1, {"requestData": "rows"})["type"] == "invalidTabularFormat"
    assert kind(API.decode_v1, [1, 2])["type"] == "invalidTabularFormat"
    assert kind(API.decode_v1, {"requestData": [], "extra": 1})["type"] == "unknownInputName"
    assert kind(API.decode_v2, {"t": [], "nope": 1}) == {"type": "unknownInputName", "input": "nope"}
    assert kind(API.decode_v2, {"t": [], "k": "high"})["type"] == "typeMismatch"


def test_api_accepts_the_pair_of_dicts_form():
    api = ModelApi.coerce(({"df": Tabular("", [("x", float)]), "alpha": Parameter("", float)},
                           {"result": Tabular("")}))
    assert [p.name for p in api.inputs] == ["df", "alpha"] and api.outputs[0].name == "result"
    with pytest.raises(ValueError):
        ModelApi(inputs=[Tabular("a"), Tabular("a")], outputs=[Tabular("o")])


@pytest.fixture(scope="module")
def pipeline():
    return reference_module().train()


def test_estimator_adapter_declares_fitted_columns_and_adds_prediction(pipeline):
    adapter = wrap(pipeline)
    assert isinstance(adapter, EstimatorAdapter)
    runner = ModelRunner(adapter)
    cols = [(c.name, c.type) for c in runner.api.inputs[0].columns]
    assert cols == [("house-location", "string"), ("bedrooms", "double"), ("bathrooms", "double")]
    out = runner.infer(runner.to_frames(runner.api.decode_v1({"requestData": [ROW, ROW]})))
    frame = out["output_df"]
    assert list(frame.columns) == ["house-location", "bedrooms", "bathrooms", "prediction"]
    expected = pipeline.predict(pd.DataFrame([ROW]))[0]
    assert frame["prediction"].tolist() == [expected, expected]
    assert runner.self_test()["output_df"].shape == (1, 4)
    with pytest.raises(InvalidArgument):
        wrap(object())


def test_inspect_records_api_and_requirements(pipeline, tmp_path):
    path = tmp_path / "m.joblib"
    joblib.dump(pipeline, path)
    doc = inspect_artifact(str(path))
    assert doc["adapter"].endswith("EstimatorAdapter")
    assert "scikit-learn" in doc["requirements"] and "numpy" in doc["requirements"]


def test_batching_merges_concurrent_requests_and_isolates_a_bad_one(pipeline):
    calls: list[int] = []
    real = pipeline.predict

    class Counting:
        feature_names_in_ = pipeline.feature_names_in_
        steps = pipeline.steps

        def predict(self, frame):
            calls.append(len(frame))
            if (frame["bedrooms"] < 0).any():
                raise ValueError("negative bedrooms")
            return real(frame)

    runner = ModelRunner(wrap(Counting()))
    queue = InferenceQueue(runner, workers=1)

    async def main():
        rows = [[{**ROW, "bedrooms": i}] for i in range(1, 9)]
        return await asyncio.gather(*(queue.infer({"input_df": r}) for r in rows),
                                    queue.infer({"input_df": [{**ROW, "bedrooms": -1}]}),
                                    return_exceptions=True)

    results = asyncio.run(main())
    ok, bad = results[:8], results[8]
    assert [r["output_df"]["bedrooms"].tolist() for r in ok] == [[i] for i in range(1, 9)]
    assert isinstance(bad, LiveMLError) and bad.name == "InferenceFailure"
    assert len(calls) < 9 + 9, "concurrent requests were not batched"
    assert max(calls) > 1
    queue.shutdown()


def test_profiles_fill_the_runtime_configuration():
    cat = ProfileCatalog()
    config = cat.runtime_configuration("default", "default")
    assert {k: config[k] for k in ("minReplicas", "maxReplicas", "cpu", "memory", "gpu",
                                   "threadCount")} == {"minReplicas": 2, "maxReplicas": 2,
                                                       "cpu": 1.0, "memory": "1GiB", "gpu": 0,
                                                       "threadCount": 1}
    assert cat.runtime_configuration("single", "small", {"threadCount": 4})["threadCount"] == 4
    with pytest.raises(LiveMLError) as err:
        cat.runtime_configuration("nope", "default")
    assert err.value.parameters["field"] == "replicaProfile"
    with pytest.raises(LiveMLError) as err:
        cat.runtime_configuration("default", "default", {"minReplicas": 3, "maxReplicas": 1})
    assert err.value.parameters["field"] == "minReplicas"


@pytest.mark.parametrize("text, size", [("256MiB", 256 * 2**20), ("1GiB", 2**30), ("512M", 512 * 10**6),
                                        ("1.5Gi", int(1.5 * 2**30)), (1024, 1024)])
def test_parse_memory(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["-1GiB", "lots", "1XB", "0"])
def test_parse_memory_rejects(text):
    with pytest.raises(LiveMLError) as err:
        parse_memory(text)
    assert err.value.parameters["field"] == "memory"


def test_layering_runtime_and_core_import_no_jupyter_or_tornado():
    code = ("import sys, liveml_runtime, liveml_runtime.server, liveml_runtime.batching;"
            "bad = [m for m in sys.modules if m.startswith(('jupyter', 'ipykernel', 'liveml_ext'))];"
            "assert not bad, bad;"
            "import liveml_ext.controlplane, liveml_ext.client;"
            "bad = [m for m in sys.modules if m.startswith(('jupyter', 'notebook'))];"
            "assert not bad, bad;")
    subprocess.run([sys.executable, "-c", code], check=True)
    code = ("import sys, liveml_ext.controlplane;"
            "bad = [m for m in sys.modules if m.startswith('tornado.web') or m.startswith('jupyter')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_parse_memory_lives_in_units_and_models_need_no_profiles():
    """``core/units.py`` breaks the ``core/models`` <-> ``core/profiles`` import cycle."""
    code = ("import sys; from liveml_ext.core import models, units;"
            "assert models.RuntimeConfiguration(memory='1GiB').memory == '1GiB';"
            "bad = [m for m in sys.modules if m in ('liveml_ext.core.profiles',"
            " 'liveml_ext.core.registry')];"
            "assert not bad, bad;"
            "from liveml_ext.core import profiles;"
            "assert not hasattr(profiles, 'parse_memory')")  # one place: core/units.py
    subprocess.run([sys.executable, "-c", code], check=True)


def test_core_errors_export_every_error_of_theirs_and_of_the_runtime():
    """``core.errors.__all__`` (what mypy sees re-exported) lists every error class there."""
    import liveml_ext.core.errors as errors
    from liveml_ext.core.errors import StartupRefused

    classes = {name for name, value in vars(errors).items()
               if isinstance(value, type) and issubclass(value, (LiveMLError, StartupRefused))}
    assert classes - set(errors.__all__) == set()
    assert {"PermissionDenied", "InvalidArgument", "LiveMLError", "HomeInUse"} <= classes
    assert all(hasattr(errors, name) for name in errors.__all__)


def test_names_rids_and_the_inference_path_are_defined_once():
    from liveml_ext import client, handlers, widgets
    from liveml_ext.core import deployments, models, names

    assert models.NAME is names.NAME is widgets.NAME
    assert models.API_NAME is names.API_NAME is widgets.API_NAME
    assert client.RID_PREFIX is names.RID_PREFIX
    assert not hasattr(deployments, "RID_PREFIX") and not hasattr(deployments, "Resolver")
    assert names.new_rid("live-deployment").startswith(names.RID_PREFIX)
    assert names.new_rid("objective").startswith("ri.models.main.objective.")
    url = client.Client("http://h:1/base", "t").inference_url(names.RID_PREFIX + "x", v2=True)
    assert url == f"http://h:1/base/foundry-ml-live/api/inference/transform/{names.RID_PREFIX}x/v2"
    assert handlers.ROUTES[0][0].startswith(names.INFERENCE_PATH)
    # the only code that spells the path out (a string starting with it, or after a URL's root)
    package = Path(names.__file__).parent.parent
    literal = re.compile(r"[\"'}]foundry-ml-live/api/inference/")
    spelled = [str(p.relative_to(package)) for p in package.rglob("*.py")
               if literal.search(p.read_text())]
    assert spelled == ["core/names.py"], spelled


def test_replica_fetches_an_artifact_by_url_and_reads_inline_requirements(tmp_path, monkeypatch):
    import fsspec

    from liveml_runtime.server import Replica, ReplicaConfig

    with fsspec.open("memory://models/m.bin", "wb") as fh:
        fh.write(b"model bytes")
    path = Replica.fetch("memory://models/m.bin")
    assert open(path, "rb").read() == b"model bytes" and path != "memory://models/m.bin"
    assert Replica.fetch(str(tmp_path / "x")) == str(tmp_path / "x")
    assert Replica.fetch(f"file://{tmp_path}/x") == f"{tmp_path}/x"
    monkeypatch.setenv("LIVEML_REQUIREMENTS", '{"numpy": "0.0.1", "surely-not-installed": "1"}')
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("liveml.replica")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        Replica(ReplicaConfig(artifact="unused")).check_environment()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    warnings = [r.getMessage() for r in records if r.levelname == "WARNING"]
    assert any("numpy 0.0.1 is required" in m for m in warnings)
    assert any("surely-not-installed 1 is required but it is not installed" in m for m in warnings)
    assert any("0 of 2 required packages match" in r.getMessage() for r in records)


def test_process_tree_from_the_kernels_children_files_matches_psutil():
    """The memory check of each local replica (twice a second) reads its process tree from
    /proc/<pid>/task/*/children, not every process of the machine as psutil's children() does."""
    import psutil

    from liveml_ext.observability.metrics import descendants, tree_usage

    tree = subprocess.Popen(["bash", "-c", "sleep 30 & sleep 30 & (sleep 30 & wait); wait"])
    try:
        want = None
        for _ in range(100):  # until bash has started the three sleeps and the subshell
            want = sorted(c.pid for c in psutil.Process(tree.pid).children(recursive=True))
            if len(want) == 4:
                break
            time.sleep(0.05)
        assert want is not None and len(want) == 4
        assert sorted(descendants(tree.pid) or []) == want
        rss, _ = tree_usage(tree.pid)
        assert rss >= sum(psutil.Process(p).memory_info().rss for p in want)
    finally:
        for p in psutil.Process(tree.pid).children(recursive=True):
            p.kill()
        tree.kill()
        tree.wait()
    assert descendants(2 ** 22 + 1) == []  # no such process: nothing below it

