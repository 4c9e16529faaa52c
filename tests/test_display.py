"""What a notebook shows: liveml's HTML look, readable values, plots that draw their data."""
from __future__ import annotations

import datetime as dt

import pandas as pd

from liveml_ext import display as ui
from liveml_ext.client import LiveMLClientError
from liveml_ext.observability.plots import plot_metrics, samples_per_replica

RID = "ri.foundry-ml-live.main.live-deployment.0b7f6bdb-c909-4d90-8a07-5f1eb7f6bdbc"


def test_frames_stay_dataframes_and_read_well():
    rows = [{"version": "1.0", "tag": "PRODUCTION", "createdAt": "2026-12-01T08:11:18.704959Z",
             "rid": RID, "reason": ""},
            {"version": "0.9", "tag": None, "createdAt": "2026-11-30T10:00:00.5Z", "rid": RID,
             "reason": ""}]
    frame = ui.frame(rows, ["version", "tag"])
    assert isinstance(frame, pd.DataFrame) and list(frame.columns)[:2] == ["version", "tag"]
    assert isinstance(frame[["version"]], ui.Frame)  # pandas operations keep the look
    html = frame._repr_html_()
    assert "2026-12-01 08:11:18<" in html and ".704959" not in html.split("title=")[0]
    assert "NaN" not in html and "None" not in html  # a release without a tag shows empty
    assert f"title='{RID}'>b7f6bdbc<" in html  # short id, full on hover
    assert "<th class=''>reason</th>" not in html  # an empty column is left out
    assert "var(--jp-" in html  # JupyterLab's theme variables


def test_predictions_show_thousands_and_two_decimals_and_keep_user_columns():
    frame = ui.data_frame([{"house-location": "Austin", "bedrooms": 3, "prediction": 476111.8951},
                           {"house-location": "Chicago", "bedrooms": 12, "prediction": 1.5e6}])
    html = frame._repr_html_()
    assert "476,111.90" in html and "1,500,000.00" in html and "e+05" not in html
    assert ">house-location<" in html  # user data keeps its column names
    assert frame["prediction"].dtype.kind == "f"  # the data itself is untouched


def test_errors_show_the_envelope_name_message_and_column():
    err = LiveMLClientError(400, {"errorName": "InferenceInvalidInput", "parameters": {
        "message": "row 0: column 'bedrooms' must be double",
        "errorType": {"type": "typeMismatch", "column": "bedrooms"}}})
    html = ui.page(ui.error(err))
    assert "<b>InferenceInvalidInput</b> (400)" in html and "typeMismatch" in html
    assert "bedrooms" in html and "lm-note-error" in html


def test_records_stay_dicts_with_a_card():
    doc = {"rid": RID, "version": "1.0", "tag": "STAGING"}
    record = ui.Record(doc, ui.release_line(doc), "release 1.0 (STAGING)")
    assert record == doc and record["version"] == "1.0"
    assert repr(record) == "release 1.0 (STAGING)" and "STAGING" in record._repr_html_()


def test_metrics_summary_uses_units_and_says_when_empty():
    rows = [{"time": "2026-12-01T08:00:05+00:00", "nodeId": "n1", "kind": "container",
             "name": "memory_bytes", "value": 1.818e8, "unit": "bytes"}]
    html = ui.metrics_summary(rows)
    assert "173.4 MiB" in html and "e+08" not in html
    assert "no requests samples" in ui.metrics_summary([], "requests")


def _rows(name: str, unit: str, values: list[float], nodes=("a", "b")) -> list[dict]:
    start = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    return [{"time": (start + dt.timedelta(seconds=5 * i)).isoformat(), "nodeId": node,
             "kind": "container", "name": name, "value": v, "unit": unit}
            for node in nodes for i, v in enumerate(values)]


def test_every_panel_draws_its_data_even_a_flat_zero_line():
    rows = _rows("cpu_cores", "cores", [0.0, 0.0, 0.0]) + \
        _rows("memory_bytes", "bytes", [1e8, 1.1e8, 1.2e8])
    fig = plot_metrics(rows, title="t")
    axes = fig.get_axes()
    assert len(axes) == 2
    for ax in axes:
        assert len(ax.get_lines()) == 2
        for line in ax.get_lines():
            assert len(line.get_xdata()) == 3 and line.get_marker() == "o"  # points show
        low, high = ax.get_ylim()
        assert low < 0 < high  # a line at zero is drawn above the axis, not on it
    assert "3 samples per series" in axes[0].get_title(loc="right")
    assert samples_per_replica(rows) == {"a": 3, "b": 3}


def test_multi_output_answers_show_each_output_under_its_name():
    out = ui.Outputs({"priced": ui.data_frame([{"house": "Austin", "final": 477630.5599}]),
                      "count": 1})
    html = out._repr_html_()
    assert "<h4>priced</h4>" in html and "477,630.56" in html
    assert "<h4>count</h4><code>1</code>" in html
    assert out["count"] == 1 and isinstance(out["priced"], pd.DataFrame)  # still the data


def test_one_error_page_for_the_magics_and_the_widgets():
    """``magics.error_html`` and the widgets' messages are ``display.error_page``."""
    import inspect

    from liveml_ext import magics, widgets

    err = LiveMLClientError(404, {"errorName": "LiveDeploymentNotFound", "parameters": {
        "message": "no live deployment 'x'", "deployment": "x"}})
    html = ui.error_page(err)
    assert html == ui.page(ui.error(err)) and "<b>LiveDeploymentNotFound</b> (404)" in html
    assert magics.error_html(err).data == html
    assert not hasattr(widgets, "_error") and "ui.error_page(" in inspect.getsource(widgets)


def test_one_answer_to_dataframe_for_magics_widgets_and_the_python_api():
    """``notebook.answer``: v1 rows as a DataFrame, v2 outputs by name; the magics unwrap one."""
    import argparse
    import inspect

    from liveml_ext import magics, notebook, widgets

    rows = [{"house": "Austin", "prediction": 476111.8951}]
    v1 = notebook.answer({"responseData": rows}, v2=False)
    assert isinstance(v1, ui.Frame) and v1.to_dict(orient="records") == rows
    v2 = notebook.answer({"priced": rows, "count": 1}, v2=True)
    assert isinstance(v2, ui.Outputs) and isinstance(v2["priced"], ui.Frame) and v2["count"] == 1
    one = notebook.answer({"priced": rows}, v2=True, unwrap=True)
    assert isinstance(one, ui.Frame) and one.to_dict(orient="records") == rows
    # a v2 output may be called responseData: it is still an output
    named = notebook.answer({"responseData": rows, "n": 2}, v2=True)
    assert isinstance(named, ui.Outputs) and named["n"] == 2
    shown = magics.rich("query", {"responseData": rows}, argparse.Namespace(v2=False))
    assert isinstance(shown, ui.Frame) and shown.to_dict(orient="records") == rows
    assert isinstance(magics.rich("query", {"a": rows, "b": rows}, argparse.Namespace(v2=True)),
                      ui.Outputs)
    for source in (inspect.getsource(widgets.DeploymentView.query),
                   inspect.getsource(notebook.Deployment.transform),
                   inspect.getsource(notebook.Deployment.transform_v2)):
        assert "answer(" in source and "data_frame(" not in source
