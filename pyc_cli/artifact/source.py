"""The source model an artifact was built from: a copy kept in `source/` (`--keep-source`), a
file the user points at with `--model`, or the recorded file name found beside the artifact or in
the working directory; every candidate is checked against the sha256s the manifest recorded.

`pyc run --compare` runs the reference runtime on this model. A kept copy makes the artifact a
self-contained debugging unit but stores the weights twice, so it is opt-in: deployed artifacts
stay small."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx

from ..errors import PycError
from .manifest import file_sha256

SOURCE_DIR = "source"


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of a graph that can hold external data (initializers, tensor attributes),
    subgraphs included."""
    yield from graph.initializer
    yield from (sparse.values for sparse in graph.sparse_initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _graph_tensors(sub)


def external_data_files(model_path: Path) -> list[str]:
    """Relative locations of the external data files the model references (sorted, unique).
    The importer has already checked that each exists inside the model's directory."""
    model = onnx.load(str(model_path), load_external_data=False)
    locations = set()
    for tensor in _graph_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.update(e.value for e in tensor.external_data if e.key == "location")
    return sorted(locations)


def describe_source(model_path: Path) -> dict[str, Any]:
    """The manifest's record of the source: sha256 of the model and of each external data file."""
    return {"file": model_path.name, "sha256": file_sha256(model_path),
            "external_data": {location: file_sha256(model_path.parent / location)
                              for location in external_data_files(model_path)},
            "kept_copy": None}


def keep_source(model_path: Path, staging: Path) -> dict[str, Any]:
    """Copy the model and its external data into `staging/source/` (relative locations are kept,
    so the copy loads as the original does) and return the manifest record."""
    record = describe_source(model_path)
    target = staging / SOURCE_DIR
    for relative in [model_path.name, *record["external_data"]]:
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_path.parent / relative, destination)
    record["kept_copy"] = f"{SOURCE_DIR}/{model_path.name}"
    return record


def source_model(artifact: Path, manifest: dict[str, Any], override: Path | None) -> Path:
    """The model to run the reference on: `override` when given (it must match the recorded
    sha256s), else the copy kept in the artifact, else the recorded file name beside the
    artifact or in the working directory when its sha256 matches (PYC-E045 when none is)."""
    record = manifest["model"]
    if override is not None:
        _check_matches(override, record)
        return override
    kept = record.get("kept_copy")
    if kept:
        path = artifact / kept
        if not path.is_file():
            raise PycError("E030", f"artifact file {kept} is missing", where=str(artifact),
                           hint="rebuild the artifact, or pass --model PATH")
        return path
    for candidate in (artifact.parent / record["file"], Path(record["file"])):
        if candidate.is_file() and file_sha256(candidate) == record["sha256"]:
            _check_matches(candidate, record)
            return candidate
    raise PycError("E045", f"the source model {record['file']} is not in the artifact (built "
                   "without --keep-source) nor beside it with the recorded sha256",
                   where=str(artifact),
                   hint=f"pass --model PATH to {record['file']} (sha256 {record['sha256'][:16]}...), "
                   "or rebuild with --keep-source")


def _check_matches(path: Path, record: dict[str, Any]) -> None:
    if not path.is_file():
        raise PycError("E045", f"--model {path} does not exist", where=str(path),
                       hint=f"point --model at {record['file']} the artifact was built from")
    if file_sha256(path) != record["sha256"]:
        raise PycError("E045", f"--model {path} is not the model the artifact was built from "
                       "(sha256 differs)", where=f"manifest sha256 {record['sha256']}",
                       hint=f"point --model at the {record['file']} used for the build, or rebuild")
    for location, expected in sorted(record.get("external_data", {}).items()):
        data = path.parent / location
        if not data.is_file() or file_sha256(data) != expected:
            raise PycError("E045", f"external data file {location!r} of --model is missing or "
                           "differs from the build's", where=str(data),
                           hint="restore the model's external data files beside it")
