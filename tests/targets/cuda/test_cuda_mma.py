"""The tensor-core GEMM and --precision without a GPU: which kernel a precision selects, how
16-bit weights are stored and read back, the options refused, and NVRTC compilation of every
case at every precision for sm_90 and sm_80. The kernels' results: test_cuda_emulated.py (on the
CPU) and test_cuda_gpu.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import init, make_model, rand, vinfo, write_model
from mma_cases import MMA_CASES, MmaCase
from mma_precision import PRECISIONS, round_to
from nvrtc_check import compile_cleanly
from onnx import helper, numpy_helper
from test_cuda_compile import needs_nvrtc

import pyc_cli
from pyc_cli.api import compile_graph
from pyc_cli.artifact.reader import load_graph
from pyc_cli.errors import PycError
from pyc_cli.targets import get_target
from pyc_cli.targets.cuda.target import CudaTarget


def initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def chosen_kernels(path: Path, precision: str | None) -> dict[str, str]:
    graph, ctx = compile_graph(path, target="cuda", precision=precision)
    return {n.op: n.ann.kernel.candidate for n in graph.nodes if n.ann.kernel is not None}


# ---------------------------------------------------------------- selection and options

@pytest.mark.parametrize("precision", PRECISIONS)
def test_reduced_precision_selects_the_tensor_core_gemm(precision: str, tmp_path: Path) -> None:
    case = MMA_CASES[0]
    path = write_model(case.make(np.random.default_rng(0)), tmp_path)
    assert chosen_kernels(path, precision)["MatMul"] == "cuda_matmul_mma"
    assert chosen_kernels(path, "fp32")["MatMul"] == "cuda_matmul_tiled"
    assert chosen_kernels(path, None)["MatMul"] == "cuda_matmul_tiled"
    _, ctx = compile_graph(path, target="cuda", precision=precision)
    (note,) = [d for d in ctx.decisions if d.action == "precision"]
    assert note.after == precision and "float32 accumulation" in note.reason


def test_few_rows_keep_the_skinny_gemm(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [vinfo("x", (8, 40))],
                       [vinfo("y", (8, 70))], [init("w", rand(rng, 40, 70))])
    assert chosen_kernels(write_model(model, tmp_path), "fp16")["MatMul"] == "cuda_matmul_skinny"


def test_precision_is_refused_where_it_does_not_apply() -> None:
    for target, precision in (("cpu", "fp16"), ("cpu", "tf32"), ("cuda", "fp8"), ("cuda", "FP16")):
        with pytest.raises(PycError) as caught:
            get_target(target, precision=precision)
        assert caught.value.code == "E050" and caught.value.where == "--precision"
    assert get_target("cpu", precision="fp32").name == "cpu"
    assert isinstance(get_target("cuda"), CudaTarget) and get_target("cuda").precision == "fp32"  # type: ignore[attr-defined]


def test_cli_precision(tmp_path: Path) -> None:
    """`pyc build --precision`: recorded for the CUDA target, refused for the CPU one."""
    from conftest import invoke

    path = write_model(MMA_CASES[0].make(np.random.default_rng(0)), tmp_path)
    code, out = invoke("build", str(path), "--precision", "fp16", "-o", str(tmp_path / "a.pyc"))
    assert code != 0 and "PYC-E050" in out and "--target cuda" in out
    code, out = invoke("build", str(path), "--target", "cuda", "--precision", "bf16",
                       "-o", str(tmp_path / "b.pyc"))
    assert code == 0, out
    assert json.loads((tmp_path / "b.pyc" / "manifest.json").read_text())["flags"]["precision"] == "bf16"


# ---------------------------------------------------------------- 16-bit weights

@pytest.mark.parametrize("precision,numpy_type", [("fp16", np.float16), ("bf16", None)])
def test_weights_are_stored_in_16_bits(precision: str, numpy_type: type | None, tmp_path: Path) -> None:
    case = MMA_CASES[0]  # K = 129, N = 65: rows padded to 72 columns
    path = write_model(case.make(np.random.default_rng(2)), tmp_path)
    artifact = tmp_path / "a.pyc"
    pyc_cli.build(path, artifact, target="cuda", precision=precision)
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["flags"]["precision"] == precision
    dtype = {"fp16": "float16", "bf16": "bfloat16"}[precision]
    assert manifest["weights"]["converted"] == {"w": {"columns": 72, "dtype": dtype}}
    w = initializers(path)["w"]
    blob = (artifact / "weights.bin").read_bytes()
    offset = manifest["weights"]["layout"]["w"]
    stored = np.frombuffer(blob, np.uint16, 129 * 72, offset).reshape(129, 72)
    assert not stored[:, 65:].any()  # the padding is zeros
    if numpy_type is not None:
        np.testing.assert_array_equal(stored[:, :65].view(np.float16), w.astype(np.float16))
    # the bias stays float32 (an epilogue operand, not a B matrix)
    b = np.frombuffer(blob, np.float32, 65, manifest["weights"]["layout"]["b"])
    np.testing.assert_array_equal(b, initializers(path)["b"])
    # read back (pyc explain / --compare): the constant as the kernels see it
    graph = load_graph(artifact, manifest)
    np.testing.assert_array_equal(graph.constants["w"], round_to(w, precision).astype(np.float32))


def test_a_weight_other_kernels_read_stays_float32(tmp_path: Path) -> None:
    """w is both the GEMM's B and an Add's operand: one copy, in float32, read by both."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "w"], ["y"])]
    model = make_model(nodes, [vinfo("x", (40, 40))], [vinfo("y", (40, 40))], [init("w", rand(rng, 40, 40))])
    graph, ctx = compile_graph(write_model(model, tmp_path), target="cuda", precision="fp16")
    assert ctx.target.constant_conversions(graph) == {}  # type: ignore[union-attr]


def test_tf32_keeps_float32_weights(tmp_path: Path) -> None:
    path = write_model(MMA_CASES[0].make(np.random.default_rng(0)), tmp_path)
    graph, ctx = compile_graph(path, target="cuda", precision="tf32")
    assert ctx.target.constant_conversions(graph) == {}  # type: ignore[union-attr]


# ---------------------------------------------------------------- NVRTC

class ForcedVariant:
    """A tuning database giving every MatMul the tensor-core GEMM with `params`."""

    def __init__(self, **params: int) -> None:
        self.params = params

    def lookup(self, signature):  # noqa: ANN001, ANN201
        from pyc_cli.ir.annotations import KernelChoice

        return KernelChoice("cuda_matmul_mma", dict(self.params)) if signature.op == "MatMul" else None


def emit_sources(graph, ctx) -> dict[str, str]:  # noqa: ANN001
    """The CUDA sources of a compiled graph (what the artifact writer would emit)."""
    from pyc_cli.abi import io_infos
    from pyc_cli.planning.weights import layout_weights
    from pyc_cli.targets.base import ModelInfo

    target: CudaTarget = ctx.target
    plan = ctx.artifacts["memory_plan"]
    layout = layout_weights(graph, {}, target.constant_conversions(graph))
    info = ModelInfo("test", io_infos(graph, graph.inputs),
                     io_infos(graph, graph.outputs, graph.public_outputs()), plan.arena_bytes,
                     layout.total_bytes, 0, "test")
    return target.emit(graph, plan, layout, info)


def emit_mma(case: MmaCase, precision: str, tmp_path: Path,
             tuning: ForcedVariant | None = None) -> tuple[str, list[dict]]:  # type: ignore[type-arg]
    path = write_model(case.make(np.random.default_rng(0)), tmp_path)
    graph, ctx = compile_graph(path, target="cuda", precision=precision, tuning=tuning)  # type: ignore[arg-type]
    sources = emit_sources(graph, ctx)
    return sources["model.cu"], json.loads(sources["launches.json"])["launches"]


@pytest.mark.parametrize("case", MMA_CASES, ids=lambda c: c.name)
def test_launch_geometry(case: MmaCase, tmp_path: Path) -> None:
    source, launches = emit_mma(case, "fp16", tmp_path)
    (launch,) = [step for step in launches if "matmul" in step["kernel"]]
    assert launch["block"] == [256 if case.tile == 128 else 128, 1, 1]
    # by default 128-tiles ask for two blocks per multiprocessor (cuda-gemm-h100.json), 64-tiles not
    threads = launch["block"][0]
    bounds = f"__launch_bounds__({threads}, 2)"
    assert (bounds in source) == (case.tile == 128), source[:2000]
    assert "matmul_mma.cu.j2" in source and "pyc_mma_fp16" in source
    # fp16 takes the 16-bit path (ldmatrix); a constant B, stored in 16 bits, comes by cp.async,
    # an activation B (the attention scores' K) through registers
    assert "pyc_ldmatrix_x4_trans(r4" in source
    assert ("pyc_cp_async16(&Bs" in source) == (case.name != "mma_attention_scores")


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("tile,min_blocks", [(64, 1), (128, 1), (128, 2)])
def test_every_tunable_variant_compiles(tile: int, min_blocks: int, precision: str, arch: str,
                                        tmp_path: Path) -> None:
    """The tile sizes and __launch_bounds__ a tuner (or cuda_gemm_bench.py) may force."""
    case = MMA_CASES[0]
    source, launches = emit_mma(case, precision, tmp_path,
                                ForcedVariant(tc_tile=tile, tc_min_blocks=min_blocks))
    assert launches[0]["block"] == [256 if tile == 128 else 128, 1, 1]
    bounds = f"__launch_bounds__({launches[0]['block'][0]}{', 2' if min_blocks == 2 else ''})"
    assert bounds in source
    compile_cleanly(source, arch)


SPLIT_CASE = next(c for c in MMA_CASES if c.name == "mma_epilogue_128x384x200")


@pytest.mark.parametrize("precision,default", [("fp16", 3), ("tf32", 6)])
def test_a_gemm_of_few_tiles_splits_k(precision: str, default: int, tmp_path: Path) -> None:
    """128 x 384 x 200: 8 tiles of 64 x 64 for a 132-multiprocessor GPU, K 384 deep (12 slices
    of 32 at fp16, 24 of 16 at tf32): K is split between blocks, each at least 4 slices deep
    (grid.z), the tile counters past the status word, the partial sums in the workspace; the
    tuned tc_ksplit overrides it (a split past the slices is capped), memory_first's 32 KiB
    cap halves it to none."""
    for sub in ("default", "1", "2", "64", "mf"):
        (tmp_path / sub).mkdir()
    source, launches = emit_mma(SPLIT_CASE, precision, tmp_path / "default")
    (launch,) = [step for step in launches if "matmul" in step["kernel"]]
    assert launch["grid"] == [4, 2, default]
    assert "atomicAdd(STATUS + tile, 1)" in source and "float* part = WS +" in source
    for forced, wanted in ((1, 1), (2, 2), (64, 12 if precision == "fp16" else 24)):
        source, launches = emit_mma(SPLIT_CASE, precision, tmp_path / str(forced),
                                    ForcedVariant(tc_ksplit=forced))
        (launch,) = [step for step in launches if "matmul" in step["kernel"]]
        assert launch["grid"][2] == wanted, forced
        assert ("atomicAdd(STATUS" in source) == (wanted > 1)
    path = write_model(SPLIT_CASE.make(np.random.default_rng(0)), tmp_path / "mf")
    graph, _ = compile_graph(path, mode="memory_first", target="cuda", precision=precision)
    (node,) = [n for n in graph.nodes if n.op == "MatMul"]
    assert node.ann.kernel is not None and not node.ann.kernel.workspace_bytes


@needs_nvrtc
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("ksplit", [2, 5])
def test_k_split_variants_compile(ksplit: int, precision: str, tmp_path: Path) -> None:
    source, _ = emit_mma(SPLIT_CASE, precision, tmp_path, ForcedVariant(tc_ksplit=ksplit))
    compile_cleanly(source, "sm_90")


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", MMA_CASES, ids=lambda c: c.name)
def test_nvrtc_compiles_the_tensor_core_gemm(case: MmaCase, precision: str, arch: str,
                                             tmp_path: Path) -> None:
    source, _ = emit_mma(case, precision, tmp_path)
    compiled = compile_cleanly(source, arch)
    shape = "m16n8k8" if precision == "tf32" else "m16n8k16"
    assert f"mma.sync.aligned.{shape}" in compiled.ptx
    assert ("ldmatrix" in compiled.ptx) == (precision != "tf32")
    copies = precision == "tf32" or case.name != "mma_attention_scores"  # K: through registers
    assert ("cp.async.c" in compiled.ptx) == copies


def test_explain_and_hostile_conversion_records(tmp_path: Path) -> None:
    """`pyc explain` names the precision (and reads the 16-bit weights back); an edited
    `weights.converted` record is a PYC error, never a crash."""
    from conftest import invoke

    path = write_model(MMA_CASES[0].make(np.random.default_rng(4)), tmp_path)
    artifact = tmp_path / "a.pyc"
    pyc_cli.build(path, artifact, target="cuda", precision="bf16")
    code, output = invoke("explain", str(artifact))
    assert code == 0 and "precision bf16" in output, output
    manifest = json.loads((artifact / "manifest.json").read_text())
    for record in ({"dtype": "float8", "columns": 72}, {"dtype": "float16", "columns": 3},
                   {"dtype": "float16", "columns": -8}, {"dtype": "float16"}, [1], "x"):
        changed = json.loads(json.dumps(manifest))
        changed["weights"]["converted"]["w"] = record
        with pytest.raises(PycError) as caught:
            load_graph(artifact, changed)
        assert caught.value.code == "E030", record
