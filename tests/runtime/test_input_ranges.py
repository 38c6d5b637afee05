"""Integer inputs get random values their use allows (a Gather table's rows, 0/1 for masks), and
an index out of range at run time names the input, the node, the value and the valid range."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REFERENCE_MODELS, onnxruntime_outputs
from helpers import init, make_model, vinfo, write_model
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.cli.main import main, random_inputs
from pyc_cli.errors import PycError
from pyc_cli.input_ranges import INPUT_RANGES_FILE

I64, I32 = TensorProto.INT64, TensorProto.INT32
SEQ, HIDDEN = 6, 4


def _bert_like(rng: np.random.Generator) -> object:
    """Embeddings of a BERT encoder: word (50 rows), token type (2 rows) and position (16 rows,
    reached through Cast to int32 and Unsqueeze) tables summed, plus an additive attention-mask
    term ((1 - mask) * -10000 after a Cast to float), and a free integer `scale_hint` input."""
    def table(name: str, rows: int) -> TensorProto:
        return init(name, rng.standard_normal((rows, HIDDEN)).astype(np.float32))

    nodes = [
        helper.make_node("Gather", ["word_table", "input_ids"], ["word"], name="word_embeddings"),
        helper.make_node("Gather", ["type_table", "token_type_ids"], ["kind"],
                         name="token_type_embeddings"),
        helper.make_node("Cast", ["position_ids"], ["pos32"], name="pos_cast", to=I32),
        helper.make_node("Unsqueeze", ["pos32", "axis0"], ["pos2d"], name="pos_unsqueeze"),
        helper.make_node("Gather", ["pos_table", "pos2d"], ["pos"], name="position_embeddings"),
        helper.make_node("Add", ["word", "kind"], ["sum1"], name="add1"),
        helper.make_node("Add", ["sum1", "pos"], ["embedded"], name="add2"),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], name="mask_cast",
                         to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "mask_f"], ["inverted"], name="mask_invert"),
        helper.make_node("Mul", ["inverted", "big"], ["mask_bias"], name="mask_scale"),
        helper.make_node("Unsqueeze", ["mask_bias", "axis2"], ["bias3d"], name="bias_unsqueeze"),
        helper.make_node("Add", ["embedded", "bias3d"], ["out"], name="add_mask"),
        helper.make_node("Cast", ["scale_hint"], ["hint_f"], name="hint_cast",
                         to=TensorProto.FLOAT),
        helper.make_node("Mul", ["out", "hint_f"], ["scaled"], name="scale"),
    ]
    inputs = [vinfo("input_ids", (1, SEQ), I64), vinfo("token_type_ids", (1, SEQ), I64),
              vinfo("position_ids", (SEQ,), I64), vinfo("attention_mask", (1, SEQ), I64),
              vinfo("scale_hint", (1, 1, 1), I64)]
    initializers = [table("word_table", 50), table("type_table", 2), table("pos_table", 16),
                    init("axis0", np.array([0], np.int64)), init("axis2", np.array([2], np.int64)),
                    init("one", np.array(1, np.float32)), init("big", np.array(-1e4, np.float32))]
    return make_model(nodes, inputs, [vinfo("scaled", (1, SEQ, HIDDEN))], initializers)


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bert")
    model = write_model(_bert_like(np.random.default_rng(5)), root, "bert_like.onnx")
    pyc_cli.build(model, root / "bert.pyc")
    return model, root / "bert.pyc"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_ranges_follow_each_input_to_its_use(bert: tuple[Path, Path]) -> None:
    ranges = json.loads((bert[1] / INPUT_RANGES_FILE).read_text())
    expected = {"input_ids": (0, 50), "token_type_ids": (0, 2), "position_ids": (0, 16),
                "attention_mask": (0, 2), "scale_hint": (0, 100)}
    assert {name: (r["low"], r["high"]) for name, r in ranges.items()} == expected
    assert ranges["position_ids"]["uses"] == [{
        "node": "position_embeddings", "op": "Gather", "low": -16, "high": 16,
        "table": "axis 0 of 'pos_table': 16 entries"}]  # found through Cast and Unsqueeze
    assert "token_type_embeddings" in ranges["token_type_ids"]["why"]
    assert "mask" in ranges["attention_mask"]["why"] and not ranges["attention_mask"]["uses"]
    assert "default" in ranges["scale_hint"]["why"]


def test_mask_found_by_its_use_not_only_its_name(tmp_path: Path) -> None:
    nodes = [helper.make_node("Cast", ["keep"], ["keep_b"], name="to_bool", to=TensorProto.BOOL),
             helper.make_node("Where", ["keep_b", "x", "zero"], ["y"], name="select")]
    model = make_model(nodes, [vinfo("keep", (2, 3), I64), vinfo("x", (2, 3))],
                       [vinfo("y", (2, 3))], [init("zero", np.array(0, np.float32))])
    _, ctx = pyc_cli.compile_graph(write_model(model, tmp_path))
    found = ctx.artifacts["input_ranges"]["keep"]
    assert (found.low, found.high) == (0, 2) and "to_bool" in found.why


def test_random_inputs_run_a_bert_like_model(bert: tuple[Path, Path]) -> None:
    """Before: token_type_ids drawn from [0, 100) stopped the run with PYC-E042."""
    model_path, artifact = bert
    code, output = invoke("run", str(artifact), "--random-inputs", "3", "--compare", "ort",
                          "--model", str(model_path))
    assert code == 0, output
    assert "random input token_type_ids: integers in [0, 2)" in output, output
    assert "random input input_ids: integers in [0, 50)" in output, output
    with pyc_cli.load(artifact) as compiled:
        feeds, _ = random_inputs(compiled, 3)
        ours = compiled.run(feeds)["scaled"]
    assert set(np.unique(feeds["attention_mask"])) <= {0, 1}
    assert feeds["token_type_ids"].max() <= 1 and feeds["input_ids"].max() < 50
    expected = onnxruntime_outputs(model_path, feeds)["scaled"]
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-2)  # atol: the -1e4 mask bias


def test_random_inputs_run_the_reference_transformer(tmp_path: Path) -> None:
    model = REFERENCE_MODELS["transformer"]
    shapes = [arg for name, dims in model.shapes.items()
              for arg in ("--input-shape", f"{name}={','.join(map(str, dims))}")]
    code, output = invoke("build", str(model.path), *shapes, "-o", str(tmp_path / "t.pyc"))
    assert code == 0, output
    code, output = invoke("run", str(tmp_path / "t.pyc"), "--random-inputs", "0", "--json")
    assert code == 0, output
    drawn = json.loads(output)["random_inputs"]
    assert drawn["input_ids"].startswith("integers in [0, 1000)")
    assert drawn["attention_mask"].startswith("integers in [0, 2)")


def _feeds(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"input_ids": rng.integers(0, 50, (1, SEQ)), "token_type_ids": np.zeros((1, SEQ),
            np.int64), "position_ids": np.arange(SEQ, dtype=np.int64),
            "attention_mask": np.ones((1, SEQ), np.int64), "scale_hint": np.ones((1, 1, 1),
                                                                                 np.int64)}


@pytest.mark.parametrize(("name", "value", "node", "valid"), [
    ("token_type_ids", 2, "token_type_embeddings", "[-2, 2)"),
    ("input_ids", -51, "word_embeddings", "[-50, 50)"),
    ("position_ids", 16, "position_embeddings", "[-16, 16)"),
])
def test_an_index_out_of_range_names_input_node_value_and_range(
        bert: tuple[Path, Path], tmp_path: Path, rng: np.random.Generator, name: str, value: int,
        node: str, valid: str) -> None:
    feeds = _feeds(rng)
    feeds[name] = feeds[name].copy()
    feeds[name].flat[3] = value
    with pyc_cli.load(bert[1]) as compiled, pytest.raises(PycError) as info:
        compiled.run(feeds)
    message = str(info.value)
    assert info.value.code == "E048", message
    assert f"input {name!r} holds {value}" in message and f"node {node!r}" in message
    assert valid in message, message
    np.savez(tmp_path / "in.npz", **feeds)  # the CLI says the same
    code, output = invoke("run", str(bert[1]), "--inputs", str(tmp_path / "in.npz"))
    assert code == 2 and output.startswith("PYC-E048:") and node in output, output


def test_an_index_computed_inside_the_model_is_not_blamed_on_an_input(tmp_path: Path) -> None:
    nodes = [helper.make_node("Add", ["ids", "shift"], ["moved"], name="shift_ids"),
             helper.make_node("Gather", ["table", "moved"], ["y"], name="lookup")]
    model = make_model(nodes, [vinfo("ids", (3,), I64)], [vinfo("y", (3, 2))],
                       [init("shift", np.array(5, np.int64)),
                        init("table", np.ones((4, 2), np.float32))])
    pyc_cli.build(write_model(model, tmp_path), tmp_path / "art")
    with pyc_cli.load(tmp_path / "art") as compiled, pytest.raises(PycError) as info:
        compiled.run({"ids": np.array([0, 1, 2], np.int64)})  # 5..7: past the 4 rows
    assert info.value.code == "E042" and "computed inside the model" in str(info.value)


def test_an_artifact_without_recorded_ranges_still_runs(bert: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    """Artifacts built before input_ranges.json (or without it) keep the old behaviour."""
    import shutil

    old = tmp_path / "old.pyc"
    shutil.copytree(bert[1], old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["files"][INPUT_RANGES_FILE]
    (old / "manifest.json").write_text(json.dumps(manifest))
    (old / INPUT_RANGES_FILE).unlink()
    with pyc_cli.load(old) as compiled:
        assert compiled.input_ranges is None
        feeds, drawn = random_inputs(compiled, 0)
        assert drawn["token_type_ids"] == "integers in [0, 100): no recorded range"
        with pytest.raises(PycError) as info:
            compiled.run(feeds)
    assert info.value.code == "E042" and "computed inside" not in str(info.value)


@pytest.mark.parametrize("record", [
    [], {"x": {"low": 0}}, {"ids": {"low": 5, "high": 5, "why": "", "uses": []}},
    {"ids": {"low": 0, "high": 1e400, "why": "", "uses": []}},
    {"ids": {"low": 0, "high": 2, "why": "", "uses": [{"node": "n", "op": "Gather",
                                                       "low": "a", "high": 2, "table": ""}]}},
    {"ids": {"low": 0, "high": 2**80, "why": "", "uses": []}},
])
def test_a_malformed_ranges_file_is_e030(bert: tuple[Path, Path], tmp_path: Path,
                                         record: object) -> None:
    """The file is hashed, but a manifest edited with it must still give a PYC error."""
    import hashlib
    import shutil

    edited = tmp_path / "edited.pyc"
    shutil.copytree(bert[1], edited)
    data = json.dumps(record).encode()
    (edited / INPUT_RANGES_FILE).write_bytes(data)
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["files"][INPUT_RANGES_FILE] = hashlib.sha256(data).hexdigest()
    (edited / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PycError) as info:
        pyc_cli.load(edited)
    assert info.value.code == "E030", str(info.value)
