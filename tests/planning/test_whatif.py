"""The what-if simulator (issue #16, point 1) on a toy model whose answers are computed by hand:
the arena of a chain of MatMuls of known sizes, the latency from given per-kernel timings (the
profile, the Amdahl thread model, the calibrated cost model), and the parsing of alternatives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pyc_cli.errors import PycError
from pyc_cli.passes import latency_model as cost
from pyc_cli.passes.tuning import kernel_signature, signature_key
from pyc_cli.whatif import simulate
from pyc_cli.whatif.spec import Alternative, apply, parse_what_if

# x[1,64] -> t0[1,256] -> t1[1,128] -> t2[1,512] -> y[1,16]: float32 intermediates of 1024,
# 512 and 2048 bytes (multiples of the 64-byte alignment); t0 and t1 are live together at mm1,
# t1 and t2 at mm2, so the arena is max(1024 + 512, 512 + 2048) = 2560 bytes in every mode
SIZES = (64, 256, 128, 512, 16)
CHAIN_ARENA = max(1024 + 512, 512 + 2048)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(int(np.random.SeedSequence().entropy % 2**32))  # fresh weights
    inits, nodes, prev = [], [], "x"
    for i, (k, n) in enumerate(zip(SIZES, SIZES[1:])):
        weight = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        out = "y" if i == len(SIZES) - 2 else f"t{i}"
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [out], name=f"mm{i}"))
        prev = out
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("whatif") / "chain.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture
def setup(chain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> simulate.Setup:
    monkeypatch.setenv(cost.STORE_ENV, str(tmp_path / "calibration.json"))
    monkeypatch.setenv("PYC_TUNING_DB", str(tmp_path / "tuning.json"))  # nothing measured
    return simulate.from_model(chain, None, Alternative(threads=1))


@pytest.mark.parametrize("text", ["mode=balanced", "mode=memory_first", "mode=latency_first",
                                  "threads=2", "memory-budget=2560"])
def test_the_arena_of_a_chain_is_the_hand_computed_peak(setup: simulate.Setup, text: str) -> None:
    scenario = simulate.simulate(setup, apply(setup.base, parse_what_if(text)), None,
                                 cost.Calibration())
    assert scenario.arena_bytes == CHAIN_ARENA == 2560
    assert scenario.lower_bound_bytes == 2560


def test_a_budget_below_the_peak_fits_no_mode(setup: simulate.Setup) -> None:
    scenario = simulate.simulate(setup, apply(setup.base, parse_what_if("memory-budget=2559")),
                                 None, cost.Calibration())
    assert "PYC-E011" in scenario.error and "2560" in scenario.error


def _timings(setup: simulate.Setup, times: dict[str, float], ratio: float = 1.0,
             threads: int = 1) -> cost.Timings:
    graph, _ = simulate.plan(setup, setup.base)
    target = setup.target(setup.base)
    calls = [{"node": n.name, "kernel": n.ann.kernel_name, "median_ms": times[n.name]}
             for n in graph.nodes if n.name in times]
    total = sum(times.values())
    return cost.timings_from_profile({"calls": calls, "total_ms": total}, graph, target.name,
                                     dict(target.kernels), threads, total * ratio, "test")


def test_latency_from_given_timings_is_their_sum_times_the_run_ratio(setup: simulate.Setup
                                                                     ) -> None:
    timings = _timings(setup, {"mm0": 0.010, "mm1": 0.020, "mm2": 0.030, "mm3": 0.005}, 1.1)
    assert timings.run_ratio == pytest.approx(1.1)
    scenario = simulate.simulate(setup, setup.base, timings, cost.Calibration())
    assert scenario.latency.ms == pytest.approx(1.1 * (0.010 + 0.020 + 0.030 + 0.005))
    assert {n.basis for n in scenario.latency.nodes} == {"profile"}
    assert scenario.latency.bases() == {"profile": pytest.approx(1.0)}


def test_two_threads_follow_the_amdahl_model(setup: simulate.Setup,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost, "effective_threads", lambda threads: max(threads, 1))
    monkeypatch.setattr(cost, "available_cores", lambda: 2)  # an idle two-core machine
    timings = _timings(setup, {"mm0": 0.010, "mm1": 0.020, "mm2": 0.030, "mm3": 0.005})
    scenario = simulate.simulate(setup, apply(setup.base, parse_what_if("threads=2")), timings,
                                 cost.Calibration())
    # by hand: share = 0.95 w / (w + 0.02); time = w ((1 - share) + share / 2) + 0.0005
    # mm0 w=0.010: share 0.31667, 0.010 * 0.84167 + 0.0005 = 0.0089167
    # mm1 w=0.020: share 0.475,   0.020 * 0.7625  + 0.0005 = 0.01575
    # mm2 w=0.030: share 0.57,    0.030 * 0.715   + 0.0005 = 0.02195
    # mm3 w=0.005: share 0.19,    0.005 * 0.905   + 0.0005 = 0.005025
    expected = {"mm0": 0.0089167, "mm1": 0.01575, "mm2": 0.02195, "mm3": 0.005025}
    got = {n.node: n.ms for n in scenario.latency.nodes}
    assert got == pytest.approx(expected, rel=1e-4)
    assert scenario.latency.ms == pytest.approx(sum(expected.values()), rel=1e-4)
    # and back: two-thread timings of the same calls give the one-thread plan's latency
    back = _timings(setup, expected, threads=2)
    assert simulate.simulate(setup, setup.base, back, cost.Calibration()).latency.ms == \
        pytest.approx(0.065, rel=1e-4)


def test_on_a_loaded_machine_a_second_thread_gains_nothing(setup: simulate.Setup,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost, "effective_threads", lambda threads: max(threads, 1))
    monkeypatch.setattr(cost, "available_cores", lambda: 1)  # the other core is busy
    timings = _timings(setup, {"mm0": 0.010, "mm1": 0.020, "mm2": 0.030, "mm3": 0.005})
    scenario = simulate.simulate(setup, apply(setup.base, parse_what_if("threads=2")), timings,
                                 cost.Calibration())
    # each call as on one thread, plus the wait for the descheduled partner: the MatMuls stream
    # their weights in statically scheduled loops, so each waits out the partner's time slice
    assert "matmul_packed_const" in cost.static_kernels(setup.target(setup.base))
    assert scenario.latency.ms == pytest.approx(0.065 + 4 * cost.STATIC_WAIT_MS)


def test_an_unmeasured_node_is_costed_with_its_kernels_calibrated_ratio(setup: simulate.Setup
                                                                        ) -> None:
    graph, _ = simulate.plan(setup, setup.base)
    target = setup.target(setup.base)
    costs = {n.name: cost.node_cost(n, graph, dict(target.kernels)) for n in graph.nodes}
    # a MatMul's cost estimate is proportional to its flops, 2 K N: 64x256, 256x128, 128x512
    assert costs["mm1"] / costs["mm0"] == pytest.approx(2 * 256 * 128 / (2 * 64 * 256))
    ratio = 2e-7  # ms per cost unit, one thread: each measured call is 0.0003 + ratio * cost
    times = {name: cost.CALL_OVERHEAD_MS + ratio * costs[name] for name in ("mm0", "mm1", "mm2")}
    timings = _timings(setup, times)
    calibration = simulate.calibration_for(setup, timings)
    assert [r for _, _, r in calibration.kernels["matmul_packed_const"]] == \
        pytest.approx([ratio] * 3)
    scenario = simulate.simulate(setup, setup.base, timings, calibration)
    mm3 = next(n for n in scenario.latency.nodes if n.node == "mm3")
    assert mm3.basis.startswith("cost model: matmul_packed_const's calibration")
    assert mm3.ms == pytest.approx(cost.CALL_OVERHEAD_MS + ratio * costs["mm3"])


def test_calibration_reaches_only_calls_of_a_similar_size() -> None:
    calibration = cost.Calibration(kernels={"k": [(10.0, 8.0, 1.0)]},
                                   ops={"Conv": [(1000.0, 8.0, 0.1), (2000.0, 8.0, 0.2),
                                                 (1e6, 8.0, 9.0)]},
                                   overall=0.5, basis="test")
    assert calibration.ratio("k", "Conv", 12.0, 8.0) == (1.0, "k's calibration (test)")
    # 1500 is 150x the kernel's one sample: the op's samples within 16x (1000 and 2000) decide
    assert calibration.ratio("k", "Conv", 1500.0, 8.0)[0] == pytest.approx(0.15)
    # the same size at 100x the flops per byte is other work too (distance ln 100 > ln 16)
    assert calibration.ratio("k", "Conv", 10.0, 800.0) == (1.0, "k's calibration (test, "
                                                                "nearest work)")
    # nothing alike: the nearest sample of the kernel
    assert calibration.ratio("k", "Conv", 1e9, 8.0) == (1.0, "k's calibration (test, nearest "
                                                             "work)")
    assert calibration.ratio("j", "Pool", 5.0, 1.0) == (0.5, "overall calibration (test)")
    assert cost.Calibration().ratio("j", "Pool", 5.0) == (cost.DEFAULT_MS_PER_COST,
                                                           "uncalibrated default")
    # within 4x in size and intensity: like work, preferred to a node's time on another kernel
    assert calibration.close("k", 30.0, 8.0) == 1.0 and calibration.close("k", 50.0, 8.0) is None


def test_a_node_timed_on_another_kernel_scales_by_the_cost_ratio(setup: simulate.Setup
                                                                  ) -> None:
    graph, _ = simulate.plan(setup, setup.base)
    target = setup.target(setup.base)
    own = cost.node_cost(graph.nodes[1], graph, dict(target.kernels))
    # mm1 was timed at 0.0403 ms on a kernel the cost model prices at twice its own: by hand,
    # (0.0403 - 0.0003 overhead) x 1/2 + 0.0003 = 0.0203 ms
    timings = cost.Timings((cost.CallTiming("mm1", "MatMul", "other", "{}", 0.0403, 2 * own),), 1)
    scenario = simulate.simulate(setup, setup.base, timings, cost.Calibration())
    mm1 = next(n for n in scenario.latency.nodes if n.node == "mm1")
    assert (mm1.basis, mm1.ms) == ("profile x cost ratio: mm1 ran other", pytest.approx(0.0203))


def test_the_same_work_elsewhere_in_the_profile_is_measured_evidence(setup: simulate.Setup
                                                                      ) -> None:
    graph, _ = simulate.plan(setup, setup.base)
    node = graph.nodes[0]
    key = signature_key(kernel_signature(node, graph, "cpu"))
    timings = cost.Timings((cost.CallTiming("renamed", "MatMul", node.ann.kernel_name or "", key,
                                            0.042, 1.0),), 1)
    scenario = simulate.simulate(setup, setup.base, timings, cost.Calibration())
    first = scenario.latency.nodes[0]
    assert (first.basis, first.ms) == ("profile: same work", pytest.approx(0.042))


@pytest.mark.parametrize("text,what", [
    ("colour=red", "'colour=red' is not KEY=VALUE with a known key"),
    ("mode", "is not KEY=VALUE"),
    ("threads=-1", "threads='-1' is not a count"),
    ("threads=1,threads=2", "threads is given twice"),
    ("memory-budget=lots", "is not a size"),
    ("mode=fastest", "mode='fastest'"),
    ("winograd=maybe", "is not on or off"),
    ("kernel=conv", "is not NODE:CANDIDATE"),
    ("kernel=a:x,kernel=a:y", "node 'a' is given two kernels"),
    ("", "names no KEY=VALUE"),
])
def test_a_malformed_alternative_is_e066_listing_the_keys(text: str, what: str) -> None:
    with pytest.raises(PycError) as caught:
        parse_what_if(text)
    assert caught.value.code == "E066"
    assert what in caught.value.what
    assert "mode, threads, memory-budget, target" in caught.value.hint


def test_alternatives_change_only_the_keys_they_name() -> None:
    base = Alternative(mode="latency_first", threads=1, layout="nchw")
    alt = apply(base, parse_what_if("threads=2, kernel=b:k2,kernel=a:k1"))
    assert (alt.mode, alt.threads, alt.kernels) == ("latency_first", 2, (("a", "k1"), ("b", "k2")))
    budget = apply(base, parse_what_if("memory-budget=64KiB"))
    assert (budget.memory_budget, budget.mode_given) == (65536, False)  # the fastest that fits
    both = apply(base, parse_what_if("memory-budget=1.5MB,mode=balanced"))
    assert (both.memory_budget, both.mode, both.mode_given) == (1_500_000, "balanced", True)


def test_a_kernel_override_of_an_unknown_node_lists_the_compiled_nodes(setup: simulate.Setup
                                                                       ) -> None:
    with pytest.raises(PycError) as caught:
        simulate.plan(setup, apply(setup.base, parse_what_if("kernel=nope:matmul_naive")))
    assert caught.value.code == "E066" and "mm0, mm1, mm2, mm3" in caught.value.hint


def test_a_kernel_override_to_a_candidate_that_does_not_apply_lists_those_that_do(
        setup: simulate.Setup) -> None:
    with pytest.raises(PycError) as caught:
        simulate.plan(setup, apply(setup.base, parse_what_if("kernel=mm1:conv2d_direct")))
    assert caught.value.code == "E066"
    assert "'conv2d_direct' is not a candidate that applies" in caught.value.what
    assert "matmul_packed_const" in caught.value.hint
