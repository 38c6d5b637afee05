"""Hostile artifacts for `pyc run` / `pyc explain`: copies of one good artifact with corrupt
files, broken or mistyped manifests, paths that leave the artifact, and tampered native code."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cases import Case

ART = "art"
RUN = ["run", ART, "--random-inputs", "0"]
EXPLAIN = ["explain", ART, "--json"]
WRONG_VALUES: list[Any] = [None, 0, -1, 2**70, 1.5, "x", "", [], {}, True, [1, "a"], {"a": 1},
                           "../x", [[]], float("nan")]


def _case(name: str, mutate: Callable[[Path], None], expect: str | None = None,
          explain: bool = True) -> Case:
    commands = [RUN, EXPLAIN] if explain else [RUN]
    return Case(name, commands, artifact=True, expect=expect, prepare=mutate)


def _manifest(work: Path) -> dict[str, Any]:
    return json.loads((work / ART / "manifest.json").read_text())


def _save(work: Path, manifest: Any) -> None:
    (work / ART / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _key_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of the manifest (dict keys and list indexes), parents before children."""
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key in sorted(value):
            paths += _key_paths(value[key], prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            paths += _key_paths(item, prefix + (index,))
    return paths


def _parent(manifest: Any, path: tuple) -> Any:
    for key in path[:-1]:
        manifest = manifest[key]
    return manifest


# ---------------------------------------------------------------- mutators

ARTIFACT_FILES = ["weights.bin", "libmodel.so", "model.ir", "src/model.h", "src/model.c",
                  "memory_plan.json", "decisions.jsonl"]


def corrupt_file(rng: random.Random) -> Case:
    """A hashed file truncated, bit-flipped, emptied or extended: E031 before native code loads."""
    name = rng.choice(ARTIFACT_FILES)
    action = rng.choice(["truncate", "bitflip", "empty", "append"])
    seed = rng.randrange(2**32)

    def mutate(work: Path) -> None:
        path = work / ART / name
        data = bytearray(path.read_bytes())
        local = random.Random(seed)
        if action == "truncate":
            data = data[:local.randrange(len(data))]
        elif action == "bitflip":
            data[local.randrange(len(data))] ^= 1 << local.randrange(8)
        elif action == "empty":
            data = bytearray()
        else:
            data += b"\x00" * local.choice([1, 7, 4096])
        path.write_bytes(bytes(data))

    return _case(f"corrupt_file[{name}:{action}]", mutate, expect="E031")


def corrupt_manifest(rng: random.Random) -> Case:
    """manifest.json as invalid JSON, not UTF-8, not an object, or absurdly nested."""
    texts = {"truncated": None, "garbage": b"\x00\x01garbage", "non_utf8": b'{"format": "\xff\xfe"}',
             "empty": b"", "null": b"null", "list": b"[]", "number": b"1e999999",
             "deep": b"[" * 200000 + b"]" * 200000, "deep_obj": b'{"a":' * 50000 + b"1" + b"}" * 50000,
             "bom": None, "nan": b'{"format": NaN}', "dup_keys": None}
    kind = rng.choice(sorted(texts))
    cut = rng.random()

    def mutate(work: Path) -> None:
        path = work / ART / "manifest.json"
        data = path.read_bytes()
        if kind == "truncated":
            path.write_bytes(data[:int(len(data) * cut)])
        elif kind == "bom":
            path.write_bytes(b"\xef\xbb\xbf" + data)
        elif kind == "dup_keys":
            path.write_bytes(data.replace(b'"library": "libmodel.so"',
                                          b'"library": "libmodel.so", "library": "../x.so"'))
        else:
            path.write_bytes(texts[kind])

    return _case(f"corrupt_manifest[{kind}]", mutate)


def manifest_wrong_type(rng: random.Random) -> Case:
    """One manifest field (any depth) replaced by a value of another type."""
    value = WRONG_VALUES[rng.randrange(len(WRONG_VALUES))]
    pick = rng.random()

    def mutate(work: Path) -> None:
        manifest = _manifest(work)
        paths = _key_paths(manifest)
        path = paths[int(pick * len(paths))]
        _parent(manifest, path)[path[-1]] = value
        (work / ART / "mutation.txt").write_text(repr(path))
        _save(work, manifest)

    return _case(f"manifest_wrong_type[{pick:.3f}={value!r}]", mutate)


def manifest_missing_key(rng: random.Random) -> Case:
    pick = rng.random()

    def mutate(work: Path) -> None:
        manifest = _manifest(work)
        paths = [p for p in _key_paths(manifest) if isinstance(p[-1], str)]
        path = paths[int(pick * len(paths))]
        del _parent(manifest, path)[path[-1]]
        _save(work, manifest)

    return _case(f"manifest_missing_key[{pick:.3f}]", mutate)


def library_outside(rng: random.Random) -> Case:
    """`library` names a copy of the (good) library outside the artifact, with its right hash:
    only the path check can refuse it."""
    kind = rng.choice(["dotdot", "absolute", "inner_dotdot", "empty", "dot", "weights", "nul",
                       "missing", "symlink_out", "src_dir"])

    def mutate(work: Path) -> None:
        art = work / ART
        manifest = _manifest(work)
        outside = work.parent / "x.so"
        shutil.copyfile(art / "libmodel.so", outside)
        library = {"dotdot": "../x.so", "absolute": str(outside), "inner_dotdot":
                   "src/../../x.so", "empty": "", "dot": ".", "weights": "weights.bin",
                   "nul": "libmodel.so\x00x", "missing": "nope.so", "symlink_out": "link.so",
                   "src_dir": "src"}[kind]
        if kind == "symlink_out":
            os.symlink(outside, art / "link.so")
        if kind in ("dotdot", "absolute", "inner_dotdot", "symlink_out"):
            manifest["files"][library] = _sha(outside)
        manifest["library"] = library
        _save(work, manifest)

    return _case(f"library_outside[{kind}]", mutate, expect="error", explain=False)


def files_entries(rng: random.Random) -> Case:
    """The files list with paths that leave the artifact, odd hashes, or the essential files
    left out while their contents are tampered with."""
    kind = rng.choice(["dotdot", "absolute", "empty_key", "hash_int", "hash_upper", "not_dict",
                       "drop_library_tamper", "drop_weights_tamper", "drop_all_tamper",
                       "dev_zero", "weights_symlink_out", "drop_model_ir"])

    def mutate(work: Path) -> None:
        art = work / ART
        manifest = _manifest(work)
        files = manifest["files"]
        outside = work.parent / "outside.txt"
        outside.write_bytes(b"outside")
        if kind == "dotdot":
            files["../../outside.txt"] = _sha(outside)
        elif kind == "absolute":
            files[str(outside)] = _sha(outside)
        elif kind == "empty_key":
            files[""] = "0" * 64
        elif kind == "hash_int":
            files["weights.bin"] = 12
        elif kind == "hash_upper":
            files["weights.bin"] = files["weights.bin"].upper()
        elif kind == "not_dict":
            manifest["files"] = sorted(files)
        elif kind == "dev_zero":
            files["/dev/zero"] = "0" * 64
        elif kind == "weights_symlink_out":
            shutil.copyfile(art / "weights.bin", outside)
            (art / "weights.bin").unlink()
            os.symlink(outside, art / "weights.bin")
        elif kind == "drop_model_ir":
            del files["model.ir"]
            (art / "model.ir").write_text("garbage\n")
        else:
            victims = {"drop_library_tamper": ["libmodel.so"], "drop_weights_tamper": ["weights.bin"],
                       "drop_all_tamper": list(files)}[kind]
            for victim in victims:
                files.pop(victim, None)
            for victim in ("libmodel.so", "weights.bin"):
                if victim in victims:
                    _flip_last_byte(art / victim)
        _save(work, manifest)

    # running never reads model.ir (a slim artifact has none); explain refuses the unlisted one
    expect = "error" if kind not in ("hash_upper", "weights_symlink_out", "drop_model_ir") else None
    return _case(f"files_entries[{kind}]", mutate, expect=expect, explain=kind != "dev_zero")


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def untrusted_io(rng: random.Random) -> Case:
    """inputs/outputs entries (not hashed) that disagree with the compiled library: the loader
    must refuse them before native code reads or writes buffers of the wrong size."""
    side = rng.choice(["inputs", "outputs"])
    kind = rng.choice(["bigger", "smaller", "rank", "scalar", "huge", "negative", "dtype",
                       "bad_dtype", "name", "extra", "drop", "float_dim", "bool_dim"])

    def mutate(work: Path) -> None:
        manifest = _manifest(work)
        entries = manifest[side]
        entry = entries[0]
        if kind == "extra":
            entries.append(dict(entry, name="extra"))
        elif kind == "drop":
            entries.pop()
        elif kind in ("dtype", "bad_dtype", "name"):
            entry[{"name": "name"}.get(kind, "dtype")] = {"dtype": "f64", "bad_dtype": "f99",
                                                           "name": "renamed"}[kind]
        else:
            entry["shape"] = {"bigger": [d * 4 for d in entry["shape"]], "smaller": entry["shape"][:1],
                              "rank": entry["shape"] + [1], "scalar": [], "huge": [2**40, 2**40],
                              "negative": [-1, 3], "float_dim": [2.5, 3], "bool_dim": [True, 3]}[kind]
        _save(work, manifest)

    return _case(f"untrusted_io[{side}:{kind}]", mutate, expect="error", explain=False)


def hostile_artifact_path(rng: random.Random) -> Case:
    kind = rng.choice(["missing", "file", "manifest_dir", "manifest_fifo", "manifest_zero",
                       "manifest_loop", "non_utf8", "too_long"])
    target = ART

    def mutate(work: Path) -> None:
        art = work / ART
        manifest = art / "manifest.json"
        if kind == "file":
            shutil.rmtree(art)
            art.write_bytes(b"not a dir")
        elif kind in ("manifest_dir", "manifest_fifo", "manifest_zero", "manifest_loop"):
            manifest.unlink()
            if kind == "manifest_dir":
                manifest.mkdir()
            elif kind == "manifest_fifo":
                os.mkfifo(manifest)
            elif kind == "manifest_zero":
                os.symlink("/dev/zero", manifest)
            else:
                os.symlink("manifest.json", manifest)

    if kind == "missing":
        target = "nope"
    elif kind == "non_utf8":
        target = os.fsdecode(b"a\xffrt")
    elif kind == "too_long":
        target = "a" * 300
    case = _case(f"hostile_artifact_path[{kind}]", mutate, expect="error")
    case.commands = [[c if c != ART else target for c in command] for command in case.commands]
    return case


def run_paths(rng: random.Random) -> Case:
    """Hostile --inputs / --output files for `pyc run` of a good artifact."""
    kind = rng.choice(["inputs_fifo", "inputs_dir", "inputs_missing", "inputs_text", "inputs_pickle",
                       "inputs_wrong_key", "inputs_wrong_dtype", "inputs_truncated", "output_dir",
                       "output_in_file", "output_non_utf8", "output_dev_full", "html_in_file"])
    inputs, output, writable = "x.npz", None, ()

    def mutate(work: Path) -> None:
        import numpy as np

        x = np.zeros((2, 4), np.float32)
        if kind == "inputs_fifo":
            os.mkfifo(work / "x.npz")
        elif kind == "inputs_dir":
            (work / "x.npz").mkdir()
        elif kind == "inputs_text":
            (work / "x.npz").write_text("not an npz")
        elif kind == "inputs_pickle":
            np.savez(work / "x.npz", x=np.array([object()], dtype=object))
        elif kind == "inputs_wrong_key":
            np.savez(work / "x.npz", nope=x)
        elif kind == "inputs_wrong_dtype":
            np.savez(work / "x.npz", x=x.astype(np.float64))
        elif kind != "inputs_missing":
            np.savez(work / "x.npz", x=x)
            if kind == "inputs_truncated":
                data = (work / "x.npz").read_bytes()
                (work / "x.npz").write_bytes(data[: len(data) // 2])
        if kind == "output_dir":
            (work / "y.npz").mkdir()
        elif kind in ("output_in_file", "html_in_file"):
            (work / "afile").write_text("keep")

    if kind.startswith("output"):
        output = {"output_dir": "y.npz", "output_in_file": "afile/y.npz", "output_dev_full": "/dev/full",
                  "output_non_utf8": os.fsdecode(b"y\xff.npz")}[kind]
        writable = (output,) if kind == "output_non_utf8" else ()
    command = ["run", ART, "--inputs", inputs] + (["--output", output] if output else [])
    if kind == "html_in_file":
        command = ["explain", ART, "--html", "afile/report.html"]
    case = Case(f"run_paths[{kind}]", [command], artifact=True, prepare=mutate, writable=writable)
    case.expect = None if kind == "output_non_utf8" else "error"
    return case


MUTATORS: dict[str, Callable[[random.Random], Case]] = {
    "run_paths": run_paths,
    "corrupt_file": corrupt_file, "corrupt_manifest": corrupt_manifest,
    "manifest_wrong_type": manifest_wrong_type, "manifest_missing_key": manifest_missing_key,
    "library_outside": library_outside, "files_entries": files_entries,
    "untrusted_io": untrusted_io, "hostile_artifact_path": hostile_artifact_path,
}
