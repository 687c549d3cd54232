"""benchmarks/op_times.py times each op of a .tflite alone, cut out into a one-op model: the cut must compute
exactly what that op computes inside the whole model, or the time it reports is not that op's."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import op_times  # noqa: E402


def test_each_one_op_model_computes_what_its_op_computes_inside_the_whole_model(coral_model):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES  # the same kernels on both sides
    data = coral_model.read_bytes()
    whole = Interpreter(model_content=data, experimental_preserve_all_tensors=True,
                        experimental_op_resolver_type=builtin)
    whole.allocate_tensors()
    entry = whole.get_input_details()[0]
    whole.set_tensor(entry["index"], np.random.default_rng(0).integers(0, 256, entry["shape"], dtype=entry["dtype"]))
    whole.invoke()
    cuts = op_times.one_op_models(data)
    assert [kind for kind, _ in cuts] == [op["op_name"] for op in whole._get_ops_details()]
    for kind, cut in cuts:
        alone = Interpreter(model_content=cut, experimental_op_resolver_type=builtin)
        alone.allocate_tensors()
        assert alone.get_input_details(), f"{kind}: the cut has no input to feed"
        for detail in alone.get_input_details():  # the cut keeps the whole model's tensor indices
            alone.set_tensor(detail["index"], whole.get_tensor(detail["index"]))
        alone.invoke()
        for detail in alone.get_output_details():
            np.testing.assert_array_equal(alone.get_tensor(detail["index"]), whole.get_tensor(detail["index"]),
                                          err_msg=kind)
    assert op_times.cpu_ms_per_invoke(cuts[0][1]) > 0
