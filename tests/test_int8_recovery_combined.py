"""benchmarks/int8_recovery.py --part combine: recoveries that cost ~no size, together (kinds of layer kept
float, then bias correction), each measured once and cached, and reported in their own section."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import int8_recovery  # noqa: E402

ADD = "edgekit_classifier/block4_add/add"
DEPTHWISE = "edgekit_classifier/block4_dw_bn_relu6/Relu6;edgekit_classifier/block4_dw_bn/FusedBatchNormV3"
PROJECT = "edgekit_classifier/block4_project_bn/FusedBatchNormV3"


class RecordingTools:
    """Stands in for the benchmark's Tools (its measuring side): records what each int8 variant was asked to keep."""

    def __init__(self):
        self.asked = []

    def int8(self, kept_float=(), *, bias_correction=False) -> dict:
        self.asked.append((set(kept_float), bias_correction))
        return {"images": 100, "drop_points": 0.5, "interval95_points": [-0.5, 1.5], "top1_agreement": 0.93,
                "size_vs_float32_tflite": 0.31}


def test_each_combination_keeps_the_union_of_its_kinds_float_and_is_measured_once(tmp_path):
    (tmp_path / "debugger.json").write_text(json.dumps({"layers": [
        {"tensor_name": name, "rmse_over_scale": 0.3} for name in (ADD, DEPTHWISE, PROJECT)]}))
    # Nothing cached and nothing to measure: every row not measured.
    assert set(int8_recovery.combine(None, tmp_path, True).values()) == {None}

    tools = RecordingTools()
    rows = int8_recovery.combine(tools, tmp_path, False, ["depthwise"])
    assert tools.asked == [({DEPTHWISE, ADD}, False), ({DEPTHWISE, ADD}, True)]  # --method depthwise: 2 of 3
    assert rows["residual adds float + bias correction"] is None
    assert rows["depthwise convs + residual adds float + bias correction"]["top1_agreement"] == 0.93

    tools = RecordingTools()
    rows = int8_recovery.combine(tools, tmp_path, False)
    assert tools.asked == [({ADD}, True)]  # the two measured above come from the cache
    assert None not in rows.values()

    result = {"backbone": "mobilenet_v2", "input_size": 224, "locate": None, "recovery": {}, "combined": rows,
              "equalization": {"rows": {}}, "mixed_int16x8_evidence": "-", "not_measured": []}
    markdown = int8_recovery._markdown(result)
    assert "## Recoveries combined (each against the parent)" in markdown
    assert "| residual adds float + bias correction | 100 | +0.50 (-0.50 to +1.50) | 0.930 | 0.310x |" in markdown
