"""Opening an artifact: manifest checks and hash verification before any native code loads.

A manifest is untrusted input (anyone can edit it): every field the loader, the runtime or
`pyc explain` reads is type-checked here, every path it names must stay inside the artifact, and
the files that are read (library, weights, IR, plan, decisions) must be listed with a hash, so a
hostile manifest gives a PYC error instead of a traceback or a file read from elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph
from ..ir.text import blob_key, parse_graph
from ..ir.types import DType
from ..passes.context import MODES
from ..planning.weights import (
    TRANSFORMS,
    Conversion,
    converted_nbytes,
    packed_numel,
    read_constant,
    transformed_nbytes,
)
from ..targets import TARGETS
from ..targets.abi_name import name_problem
from ..targets.cpu.features import feature_flags, is_cpu_name
from ..targets.cpu.target import BASE_FLAGS, OPTIONAL_FLAGS
from .manifest import FALLBACKS_DIR, FORMAT, FORMAT_VERSION, MANIFEST, fallback_dir, file_sha256

# what `pyc explain` reads; with the library and the weights, `pyc run` reads nothing else, so a
# slim artifact (`pyc build --slim`, `pyc strip`) keeps only those and the C headers
EXPLAIN_FILES = ("model.ir", "memory_plan.json", "decisions.jsonl", "memory_timeline.svg")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def read_manifest(artifact: Path) -> dict[str, Any]:
    path = artifact / MANIFEST
    try:
        found = path.is_file()
        data = path.read_bytes() if found else b""
    except OSError as exc:
        raise PycError("E030", f"cannot read {MANIFEST} of {artifact}: {exc.strerror or exc}",
                       where=str(artifact), hint="pass a directory made by `pyc build`") from exc
    if not found:
        raise PycError("E030", f"{artifact} is not a PyC artifact (no {MANIFEST})",
                       where=str(artifact), hint="pass a directory made by `pyc build`")
    manifest = _parse_json(data, path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PycError("E030", f"{MANIFEST} does not describe a PyC artifact", where=str(path),
                       hint="rebuild the artifact")
    version = manifest.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:  # JSON true is not version 1
        raise PycError("E032", f"artifact format version {_describe(version)} is not "
                       f"{FORMAT_VERSION}", where=str(path), hint="rebuild it with this PyC")
    target = manifest.get("target")
    if isinstance(target, str) and target in TARGET_RECORDS and TARGET_RECORDS[target] not in manifest:
        record = TARGET_RECORDS[manifest["target"]]
        raise PycError("E032", f"the manifest names target {manifest['target']} but holds no "
                       f"{record!r} record: the artifact was built for another target",
                       where=str(path), hint="rebuild the artifact for this target")
    check_manifest(manifest, path)
    if manifest["target"] not in TARGETS:
        raise PycError("E032", f"the artifact was built for target {_describe(manifest['target'])}"
                       f", which this PyC cannot load (targets: {', '.join(TARGETS)})",
                       where=str(path), hint="rebuild it with `pyc build --target cpu` (or cuda)")
    return manifest


def _parse_json(data: bytes, path: Path) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise PycError("E030", f"{MANIFEST} is not valid JSON ({reason})", where=str(path),
                       hint="rebuild the artifact") from exc


# ---------------------------------------------------------------- the manifest's shape


class _Opt:
    """A key that may be missing (artifacts of older builds)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


class _Dict:
    def __init__(self, value: Any) -> None:
        self.value = value


class _List:
    def __init__(self, item: Any) -> None:
        self.item = item


COUNT = "count"  # a non-negative int (not a bool)
INT = "int"
BOOL = "bool"
TEXT = "text"  # a str that encodes as UTF-8 (JSON can carry lone surrogates)
DIM = "dim"  # a shape's dim: a count, or the text of a symbolic dim (issue #15)
# `shape` holds numbers (a symbolic dim's upper bound); `dims`, in a model with symbolic dims,
# the dims as built (numbers and texts: `batch`, `2*seq`)
IO_ENTRY = {"name": TEXT, "dtype": TEXT, "shape": _List(COUNT), "dims": _Opt(_List(DIM))}
DIM_BOUNDS = {"name": TEXT, "lo": COUNT, "hi": COUNT}
CPU = {"arch": TEXT, "march": TEXT, "resolved_march": TEXT, "features": _List(TEXT),
       "requested_features": _List(TEXT)}
# the CUDA target's record: the GPU architecture of the CUBIN, the PTX kept beside it, the
# launch plan the runtime follows (targets/cuda/target.py)
CUDA = {"arch": TEXT, "cubin": TEXT, "ptx": TEXT, "launches": TEXT, "ptx_isa": TEXT,
        "ptx_min_driver": TEXT}
# what each target's artifacts must hold beyond SCHEMA's common part
TARGET_RECORDS = {"cpu": "cpu", "cuda": "cuda"}
SCHEMA: dict[str, Any] = {
    "pyc_version": TEXT, "target": TEXT, "mode": TEXT, "library": TEXT, "arena_bytes": COUNT,
    "cpu": _Opt(CPU), "cuda": _Opt(CUDA), "slim": _Opt(BOOL), "header": _Opt(TEXT),
    "symbol_prefix": TEXT, "targets": _Opt(_List(TEXT)),
    "unreachable_branches": _Opt(_List({"if": TEXT, "branch": TEXT, "reason": TEXT})),
    "model": {"file": TEXT, "sha256": TEXT, "graph_name": TEXT, "opset": INT,
              "source_ops": _Dict(COUNT), "compiled_nodes": COUNT},
    "toolchain": {"compiler": _Opt(TEXT), "compiler_family": _Opt(TEXT),
                  "compiler_version": _Opt(TEXT),
                  "flags": _Opt(_List(TEXT)), "libraries": _Opt(_List(TEXT)), "march": _Opt(TEXT)},
    "inputs": _List(IO_ENTRY), "outputs": _List(IO_ENTRY), "dims": _Opt(_List(DIM_BOUNDS)),
    "weights": {"file": TEXT, "bytes": COUNT, "checksum": _Opt(INT), "layout": _Dict(COUNT),
                "packed": _Opt(_Dict(COUNT)),
                # constants stored in 16 bits (--precision fp16 / bf16, planning/weights.py)
                "converted": _Opt(_Dict({"dtype": TEXT, "columns": COUNT})),
                # constants stored through a build-time transform (the CPU Winograd conv's U)
                "transformed": _Opt(_Dict(TEXT)),
                # a shape bucket's weights: the artifact's own file, of this sha256 (api.py)
                "shared": _Opt(TEXT)},
    "files": _Dict(TEXT),
}


def check_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Raise PYC-E030 naming the first field that is missing or has the wrong type, path or
    value; the loader and `pyc explain` then index it without further checks."""
    problem = _shape_problem(manifest, SCHEMA, "") or _value_problem(manifest)
    if problem:
        raise PycError("E030", f"{MANIFEST} is malformed: {problem}", where=str(path),
                       hint="rebuild the artifact")


def _shape_problem(value: Any, spec: Any, where: str) -> str:
    if isinstance(spec, _Opt):
        spec = spec.spec
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{where or 'the manifest'} is not an object"
        for key, sub in spec.items():
            if key not in value:
                if not isinstance(sub, _Opt):
                    return f"{where}.{key} is missing".lstrip(".")
                continue
            problem = _shape_problem(value[key], sub, f"{where}.{key}".lstrip("."))
            if problem:
                return problem
        return ""
    if isinstance(spec, _Dict):
        if not isinstance(value, dict):
            return f"{where} is not an object"
        bad = next((k for k, v in value.items() if not _is_text(k) or _shape_problem(v, spec.value, k)),
                   None)
        return f"{where}[{bad!r}] is not valid" if bad is not None else ""
    if isinstance(spec, _List):
        if not isinstance(value, list):
            return f"{where} is not a list"
        for index, item in enumerate(value):
            problem = _shape_problem(item, spec.item, f"{where}[{index}]")
            if problem:
                return problem
        return ""
    return "" if _scalar_ok(value, spec) else f"{where} is {_describe(value)}, not a {spec}"


def _scalar_ok(value: Any, spec: str) -> bool:
    if spec == TEXT:
        return _is_text(value)
    if spec == DIM:
        return _is_text(value) or _scalar_ok(value, COUNT)
    if spec == BOOL:
        return isinstance(value, bool)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    return is_int and (spec == INT or value >= 0)


def _is_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _value_problem(manifest: dict[str, Any]) -> str:
    """Paths inside the artifact, well-formed hashes, the files running needs listed, known
    dtypes, addressable shapes, a known mode, and compiler options PyC itself would pass."""
    files = manifest["files"]
    if name_problem(manifest["symbol_prefix"]):
        return f"symbol_prefix {manifest['symbol_prefix']!r} is not a valid model name"
    for name, digest in files.items():
        if not is_inside_path(name):
            return f"files names {name!r}, which is not a relative path inside the artifact"
        if not _SHA256.fullmatch(digest):
            return f"the sha256 of {name!r} is not 64 lowercase hex digits"
    for field, name in (("library", manifest["library"]), ("weights.file", manifest["weights"]["file"])):
        if name not in files and not (field == "weights.file" and "shared" in manifest["weights"]):
            return f"{field} {name!r} is not among the hashed files"
    if "header" in manifest and not is_inside_path(manifest["header"]):
        return f"header {manifest['header']!r} is not a relative path inside the artifact"
    common = (_source_problem(manifest["model"], files) or _mode_problem(manifest)
              or _io_problem(manifest) or _targets_problem(manifest))
    if common:
        return common
    record = "cuda" if manifest["target"] == "cuda" else "cpu"  # what the target's code needs
    if record not in manifest:
        return f"{record} is missing"
    if record == "cuda":
        return _cuda_problem(manifest)
    return _cpu_problem(manifest["cpu"]) or _toolchain_problem(manifest)


def _targets_problem(manifest: dict[str, Any]) -> str:
    """An artifact of several targets lists distinct known ones, its own first, and hashes
    each fallback's manifest."""
    targets = manifest.get("targets", [manifest["target"]])
    if not targets or targets[0] != manifest["target"] or len(set(targets)) != len(targets):
        return f"targets {_describe(targets)} does not start with the target and list each once"
    unknown = [name for name in targets if name not in TARGETS]
    if unknown:
        return f"targets names unknown targets {_describe(unknown)}"
    missing = [name for name in targets[1:] if f"{fallback_dir(name)}/{MANIFEST}" not in manifest["files"]]
    return f"the fallback target {missing[0]}'s manifest is not among the hashed files" if missing else ""


def fallback_targets(manifest: dict[str, Any]) -> list[str]:
    """The targets tried after the artifact's own, in order (none for a one-target artifact)."""
    return list(manifest.get("targets", [manifest["target"]])[1:])


def _cuda_problem(manifest: dict[str, Any]) -> str:
    """The CUDA record names the library (the CUBIN) and a hashed launch plan, for an
    architecture the CUDA target builds for."""
    from ..targets.cuda.toolchain import SPECIFIC_ARCHS, SUPPORTED_ARCHS

    cuda, files = manifest["cuda"], manifest["files"]
    if cuda["arch"] not in SUPPORTED_ARCHS:
        return f"cuda.arch {_describe(cuda['arch'])} is not one of {', '.join(SUPPORTED_ARCHS)}"
    if "cubin_arch" in cuda and cuda["cubin_arch"] != SPECIFIC_ARCHS.get(cuda["arch"]):
        return (f"cuda.cubin_arch {_describe(cuda['cubin_arch'])} is not {cuda['arch']}'s "
                "architecture-specific variant")
    if cuda["cubin"] != manifest["library"]:
        return "cuda.cubin is not the artifact's library"
    for key in ("launches", "ptx"):
        if cuda[key] not in files:
            return f"cuda.{key} {_describe(cuda[key])} is not among the hashed files"
    if cuda["ptx_min_driver"] and not re.fullmatch(r"\d{1,3}\.\d{1,3}", cuda["ptx_min_driver"]):
        return f"cuda.ptx_min_driver {_describe(cuda['ptx_min_driver'])} is not a CUDA version"
    return ""


def _source_problem(model: dict[str, Any], files: dict[str, str]) -> str:
    """What `pyc run --compare` opens: a kept copy listed among the files, a plain file name,
    and external data locations relative to the model."""
    if model["file"] in ("", ".", "..") or "/" in model["file"] or "\x00" in model["file"]:
        return f"model.file {_describe(model['file'])} is not a plain file name"
    kept = model.get("kept_copy")
    if kept is not None and (not _is_text(kept) or kept not in files):
        return f"model.kept_copy {_describe(kept)} is not among the hashed files"
    external = model.get("external_data", {})
    if not isinstance(external, dict) or not all(
            is_inside_path(k) and _is_text(v) and _SHA256.fullmatch(v) for k, v in external.items()):
        return "model.external_data is not a map of relative paths to sha256s"
    return ""


# a policy from a plugin (planning/policy.py) plans under its own name: any such name is read
# back (loading never needs the plugin); the built-in modes are among them
_POLICY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def _mode_problem(manifest: dict[str, Any]) -> str:
    mode = manifest["mode"]
    if mode not in MODES and not (isinstance(mode, str) and _POLICY_NAME.fullmatch(mode)):
        return (f"mode {_describe(mode)} is not one of {', '.join(MODES)} nor a policy name "
                "(letters, digits, _ . -)")
    policy = manifest.get("policy", {"name": mode, "version": ""})
    if not isinstance(policy, dict) or policy.get("name") != mode \
            or not isinstance(policy.get("version"), str):
        return "policy is not {name: the mode, version: text}"
    return ""


_DTYPES = {d.value for d in DType}
MAX_TENSOR_BYTES = 1 << 48  # far above any real tensor; keeps sizes exact in int64 and numpy


def _io_problem(manifest: dict[str, Any]) -> str:
    for side in ("inputs", "outputs"):
        for entry in manifest[side]:
            if entry["dtype"] not in _DTYPES:
                return f"{side} {entry['name']!r} has unknown dtype {entry['dtype']!r}"
            nbytes = DType(entry["dtype"]).numpy.itemsize
            for dim in entry["shape"]:
                nbytes *= dim
                if nbytes > MAX_TENSOR_BYTES:
                    return f"{side} {entry['name']!r} has an impossible shape {_describe(entry['shape'])}"
    return ""


def _cpu_problem(cpu: dict[str, Any]) -> str:
    requested = cpu["requested_features"]
    if any(item[:1] not in ("+", "-") for item in requested):
        return f"cpu.requested_features {_describe(requested)} are not +NAME / -NAME items"
    names = [cpu["arch"], cpu["march"], cpu["resolved_march"], *cpu["features"],
             *(item[1:] for item in requested)]
    bad = next((name for name in names if not is_cpu_name(name)), None)
    return f"cpu holds {_describe(bad)}, which is not a CPU or feature name" if bad is not None else ""


def _toolchain_problem(manifest: dict[str, Any]) -> str:
    """`pyc run --per-node` and the JIT compile with the recorded options: they must be the ones
    PyC passes (no plugin, include path or output redirection), for the CPU recorded in `cpu`."""
    toolchain, cpu = manifest["toolchain"], manifest["cpu"]
    target_flags = [f"-march={cpu['march']}", *feature_flags(cpu["requested_features"])]
    flags = toolchain.get("flags", [])
    if [f for f in flags if f not in BASE_FLAGS and f not in OPTIONAL_FLAGS] != target_flags:
        return f"toolchain.flags are not the options PyC compiles with for -march={cpu['march']}"
    if toolchain.get("march", cpu["march"]) != cpu["march"]:
        return "toolchain.march differs from cpu.march"
    unknown = [lib for lib in toolchain.get("libraries", []) if lib not in SYSTEM_LIBRARIES]
    return f"toolchain.libraries names unknown libraries {unknown}" if unknown else ""


# the only system libraries generated code links (math, SIMD math, an OpenMP runtime)
SYSTEM_LIBRARIES = ("-lm", "-lmvec", "-lgomp", "-lomp")


def is_inside_path(name: str) -> bool:
    """A relative POSIX path with no '..', '.' or empty parts, no backslash and no NUL."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return False
    parts = name.split("/")
    return all(part not in ("", ".", "..") for part in parts) and PurePosixPath(name).parts == tuple(parts)


# ---------------------------------------------------------------- files


def runtime_files(manifest: dict[str, Any]) -> tuple[str, ...]:
    """What running reads: the library and the weights, a CUDA artifact's launch plan and PTX
    (what a newer GPU JITs), and the fallback targets' manifests (every other file only
    explains)."""
    launches = ((manifest["cuda"]["launches"], manifest["cuda"]["ptx"])
                if manifest.get("target") == "cuda" else ())
    fallbacks = tuple(f"{fallback_dir(name)}/{MANIFEST}" for name in fallback_targets(manifest))
    weights = () if "shared" in manifest["weights"] else (manifest["weights"]["file"],)
    return (manifest["library"], *weights, *launches, *fallbacks)


def is_fallback_file(name: str) -> bool:
    """A file of a fallback target's artifact (its own manifest says what it is)."""
    return name.startswith(f"{FALLBACKS_DIR}/")


def verify_files(artifact: Path, manifest: dict[str, Any]) -> None:
    """Every listed file must be inside the artifact (no symlink out of it) with its recorded
    sha256 (checked before native code loads). A file running does not need may be absent (a
    slim artifact, or explain files deleted by hand); what reads one calls require_files."""
    needed = runtime_files(manifest)
    try:
        root = artifact.resolve()
        for relative, expected in sorted(manifest["files"].items()):
            path = artifact / relative
            if relative not in needed and not path.exists() and not path.is_symlink():
                continue
            _verify_file(root, artifact, relative, expected)
        weights = artifact / manifest["weights"]["file"]
        if "shared" in manifest["weights"]:  # a bucket's: its artifact's file, checked there
            return
        if weights.stat().st_size != manifest["weights"]["bytes"]:  # the library reads this many
            raise PycError("E031", f"{weights.name} holds {weights.stat().st_size} bytes, "
                           f"{MANIFEST} says {manifest['weights']['bytes']}", where=str(weights),
                           hint="the artifact was modified; rebuild it")
    except (OSError, RuntimeError) as exc:  # RuntimeError: Path.resolve on a symlink loop
        reason = exc.strerror if isinstance(exc, OSError) else None
        raise PycError("E030", f"cannot read the artifact's files: {reason or exc}",
                       where=str(artifact), hint="rebuild the artifact") from exc


def require_files(artifact: Path, manifest: dict[str, Any], names: list[str] | tuple[str, ...],
                  purpose: str) -> None:
    """PYC-E035 naming the files `purpose` reads that the artifact lacks (those present were
    hash-checked by verify_files; an unlisted file is not trusted, so it counts as absent)."""
    missing = [name for name in names
               if name not in manifest["files"] or not (artifact / name).is_file()]
    if not missing:
        return
    why = ("it is slim: built with --slim or stripped by `pyc strip`" if manifest.get("slim")
           else "they were deleted from it")
    raise PycError("E035", f"{purpose} needs {', '.join(missing)}, which this artifact lacks ({why})",
                   where=str(artifact),
                   hint="rebuild the artifact without --slim for this; `pyc run` works without them")


def _verify_file(root: Path, artifact: Path, relative: str, expected: str) -> None:
    path = artifact / relative
    if not path.is_file():
        raise PycError("E030", f"artifact file {relative} is missing", where=str(artifact),
                       hint="rebuild the artifact")
    if not path.resolve().is_relative_to(root):
        raise PycError("E030", f"artifact file {relative} links outside the artifact",
                       where=str(path), hint="rebuild the artifact")
    if file_sha256(path) != expected:
        raise PycError("E031", f"{relative} does not match its sha256 in {MANIFEST}",
                       where=str(path), hint="the artifact was modified; rebuild it")


def load_graph(artifact: Path, manifest: dict[str, Any], weights_dir: Path | None = None) -> Graph:
    """The IR after passes, with large constants read back from the weights file (a shape
    bucket sharing its artifact's weights reads them from `weights_dir`, checked by hash)."""
    if "shared" not in manifest["weights"]:
        weights_dir = None  # a bucket with weights of its own (a box fixing a dim) reads them
    elif weights_dir is None:
        weights_dir = artifact.parent.parent  # a shape bucket: buckets/ID/ of its artifact
    weights_path = (weights_dir or artifact) / manifest["weights"]["file"]
    if not weights_path.is_file():
        raise PycError("E035", f"{weights_path.name} is missing", where=str(weights_path),
                       hint="rebuild the artifact")
    weights = weights_path.read_bytes()
    if "shared" in manifest["weights"] and \
            hashlib.sha256(weights).hexdigest() != manifest["weights"]["shared"]:
        raise PycError("E031", f"{weights_path.name} does not match the sha256 the bucket "
                       f"{artifact.name} shares", where=str(weights_path),
                       hint="the artifact was modified; rebuild it")
    text = (artifact / "model.ir").read_text(encoding="utf-8")
    shell = parse_graph(text, _BlobProbe())
    blobs = {}
    packed = manifest["weights"].get("packed", {})
    converted = manifest["weights"].get("converted", {})
    transformed = manifest["weights"].get("transformed", {})
    # a converted or transformed constant reads back rounded: it takes the key model.ir gives
    # the original
    keys = _blob_keys(text) if converted or transformed else {}
    for name, offset in manifest["weights"]["layout"].items():
        ttype = shell.types.get(name)
        width = packed.get(name)
        conversion = _conversion(converted.get(name), ttype)
        transform = _transform(transformed.get(name), ttype)
        if ttype is None or (width is not None and (width < 1 or ttype.rank < 1)) or \
                offset + (transformed_nbytes(ttype.shape, ttype.dtype.itemsize, transform)
                          if transform else
                          converted_nbytes(ttype.shape, conversion) if conversion else
                          ttype.nbytes if width is None else
                          packed_numel(ttype.shape, width) * ttype.dtype.itemsize) > len(weights):
            raise PycError("E030", f"the weights layout in {MANIFEST} does not fit model.ir "
                           f"(constant {name!r} at offset {offset})", where=str(artifact),
                           hint="rebuild the artifact")
        array = read_constant(weights, offset, ttype.dtype.numpy, ttype.shape, width, conversion,
                              transform)
        blobs[keys.get(name, "") if conversion or transform else blob_key(array)] = array
    try:
        return parse_graph(text, blobs)
    except KeyError as exc:
        raise PycError("E030", f"a constant of model.ir is missing from the weights layout in "
                       f"{MANIFEST} ({exc})", where=str(artifact), hint="rebuild the artifact") from exc


def _blob_keys(text: str) -> dict[str, str]:
    """Constant name -> the blob key model.ir gives it."""
    found = {}
    for line in text.splitlines():
        match = re.match(r'const %("(?:[^"\\]|\\.)*") : .* = blob ("sha256:[0-9a-f]+")$', line)
        if match:
            found[json.loads(match.group(1))] = json.loads(match.group(2))
    return found


def _conversion(record: object, ttype: object) -> Conversion | None:
    """A constant's 16-bit stored form from the manifest (PYC-E030 where it cannot hold)."""
    if record is None:
        return None
    shape = tuple(getattr(ttype, "shape", ()))
    flat = isinstance(record, dict) and record.get("flat", False)
    if len(shape) >= 2 and flat is True:  # a conv weight, read as [OC, C * KH * KW]
        shape = Conversion("float16", 0, True).matrix_shape(shape)
    if not isinstance(record, dict) or record.get("dtype") not in ("float16", "bfloat16") \
            or not isinstance(record.get("columns"), int) or len(shape) < 2 \
            or not isinstance(flat, bool) or not shape[-1] <= record["columns"] <= shape[-1] + 8:
        raise PycError("E030", f"a converted weight in {MANIFEST} does not fit model.ir ({record!r})",
                       hint="rebuild the artifact")
    return Conversion(record["dtype"], record["columns"], flat)


def graph_shell(text: str) -> Graph:
    """The graph of a model.ir text with its large constants left empty (their types only):
    enough to count and name its nodes."""
    return parse_graph(text, _BlobProbe())


def _transform(record: object, ttype: object) -> str | None:
    """A constant's build-time transform from the manifest (PYC-E030 where it cannot hold)."""
    if record is None:
        return None
    shape = tuple(getattr(ttype, "shape", ()))
    if record not in TRANSFORMS or not TRANSFORMS[record].accepts(shape):  # type: ignore[index]
        raise PycError("E030", f"a transformed weight in {MANIFEST} does not fit model.ir "
                       f"({record!r})", hint="rebuild the artifact")
    return str(record)


class _BlobProbe(dict):
    """Answers any blob lookup with an empty array (first parse only learns the types)."""

    def __getitem__(self, key: str) -> np.ndarray:
        return np.empty(0)

    def get(self, key, default=None):  # noqa: ANN001, ANN201
        return np.empty(0)
