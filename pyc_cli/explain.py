"""`pyc explain`: what the model is, what each pass did and why, fusions, kernels and memory."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .artifact.manifest import MANIFEST, fallback_dir
from .artifact.reader import (
    EXPLAIN_FILES,
    fallback_targets,
    load_graph,
    read_manifest,
    require_files,
    verify_files,
)
from .ir.annotations import ALIAS_KERNELS
from .ir.graph import Graph, Node
from .ops import registry
from .passes.pipeline import PASS_NAMES
from .planning.runtime_offsets import RuntimeOffsets
from .units import format_count, format_size

_SUMMARY_ACTIONS = {"summary", "node_count"}


SCHEMA = "pyc.explain/1"  # docs/explain_json.md; bump on a change that breaks a reader


def explain_data(artifact: str | Path) -> dict[str, Any]:
    """The explanation as JSON-ready data, schema `pyc.explain/1` (docs/explain_json.md)."""
    root = Path(artifact)
    manifest = read_manifest(root)
    verify_files(root, manifest)  # the report embeds artifact files; they must be the built ones
    require_files(root, manifest, EXPLAIN_FILES, "`pyc explain`")
    decisions = [json.loads(line) for line in
                 (root / "decisions.jsonl").read_text().splitlines() if line.strip()]
    plan = json.loads((root / "memory_plan.json").read_text())
    graph = load_graph(root, manifest)
    kernels = _kernels(graph, decisions, plan)
    return {
        "schema": SCHEMA,
        "model": {**manifest["model"], "inputs": manifest["inputs"], "outputs": manifest["outputs"]},
        # symbolic dims (issue #15): name and bounds; the inputs' and outputs' `dims` name them
        **({"dims": manifest["dims"]} if "dims" in manifest else {}),
        "target": manifest["target"],
        "targets": [manifest["target"], *fallback_targets(manifest)],
        "mode": manifest["mode"],
        "policy": "{name}@{version}".format(**manifest.get(
            "policy", {"name": manifest["mode"], "version": "1"})),
        "pyc_version": manifest["pyc_version"],
        "flags": _flags(manifest),
        "toolchain": manifest["toolchain"],
        # what the code needs of the machine: the CPU record, or a CUDA artifact's GPU record
        **{key: manifest[key] for key in ("cpu", "cuda") if key in manifest},
        "passes": _passes(decisions),
        "fusions": _fusions(graph, decisions),
        "kernels": kernels,
        "flops_total": sum(k["flops"] for k in kernels),
        "tuning": _tuning(decisions),
        "compile_budget": [d["reason"] for d in decisions if d["action"] == "compile_budget"],
        # pyc build --feedback (issue #16 point 5): the decisions the run telemetry drove
        **({"feedback": _feedback(decisions)} if any(
            str(d.get("serves", "")).startswith("feedback:") for d in decisions) else {}),
        "memory": {**_memory(plan), **({"symbolic_arena": _symbolic_arena(plan, decisions)}
                                        if "dims" in manifest else {})},
        "sizes": _sizes(root, manifest),
        # shape buckets (issue #15 point 3): the static plans beside the generic one
        **({"shape_buckets": _shape_buckets(root, manifest, decisions, graph)}
           if "buckets" in manifest else {}),
    }


def _shape_buckets(root: Path, manifest: dict[str, Any], decisions: list[dict[str, Any]],
                   generic: Graph) -> dict[str, Any]:
    """Each bucket (its box and shapes, share of the sample, arena beside the generic plan's, its
    kernels and those unlike the generic plan's, why it exists) and the sample's shapes that
    got none (left out, or dropped by the compile budget), from the manifests, the buckets'
    IR and the decision log."""
    generic_kernels = {node.name: node.ann.kernel_name for node in generic.nodes}
    buckets = []
    for entry in manifest["buckets"]:
        where = root / entry["dir"]
        graph = load_graph(where, read_manifest(where), root)
        kernels = [{"node": node.name, "kernel": node.ann.kernel_name} for node in graph.nodes]
        buckets.append({**{key: entry[key] for key in ("id", "dir", "shapes", "count", "share",
                                                       "arena_bytes", "compiled_nodes",
                                                       "reason")},
                        "kind": entry.get("kind", "static"), "dims": entry.get("dims"),
                        "shared_weights": bool(entry.get("shared_weights")),
                        "kernels": kernels,
                        "kernels_unlike_generic": sum(
                            generic_kernels.get(k["node"]) != k["kernel"] for k in kernels)})
    return {
        "generic_arena_bytes": manifest["arena_bytes"],
        "buckets": buckets,
        "left_out": [d["reason"] for d in decisions if d["action"] == "shape_bucket_left_out"],
        "dropped": [d["reason"] for d in decisions if d["action"] == "shape_bucket_dropped"],
    }


def _feedback(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every decision serving `feedback:...`: its rule, action, nodes and reason."""
    return [{"serves": d["serves"], "action": d["action"], "nodes": d.get("nodes", []),
             "reason": d["reason"], **({"bucket": d["bucket"]} if "bucket" in d else {})}
            for d in decisions if str(d.get("serves", "")).startswith("feedback:")]


def _flags(manifest: dict[str, Any]) -> dict[str, Any]:
    """The recorded build flags (informational: not part of the checked manifest schema)."""
    flags = manifest.get("flags")
    return flags if isinstance(flags, dict) else {}


def _kernels(graph: Graph, decisions: list[dict[str, Any]], plan: dict[str, Any]
             ) -> list[dict[str, Any]]:
    """One entry per node, in execution order (the order model.c runs them)."""
    reasons = {d["nodes"][0]: d["reason"] for d in decisions
               if d["action"] in ("select_kernel", "alias") and d["nodes"]}
    placed = {t["name"]: t for t in plan["tensors"]}
    kernels = []
    for index, node in enumerate(graph.nodes):
        kernel = node.ann.kernel_name
        workspace = placed.get(f"{node.name}#workspace")
        kernels.append({
            "index": index, "node": node.name, "op": node.op, "kernel": kernel,
            "reason": reasons.get(node.name, ""),
            "flops": _node_flops(node, graph, kernel),
            "fused_nodes": _fused_nodes(node),
            "inputs": [name for name in node.inputs if name],
            "outputs": [_value(name, graph, placed) for name in node.outputs if name],
            "workspace": None if workspace is None else
            {"bytes": workspace["bytes"], "arena_offset": workspace.get("offset")},
        })
    return kernels


def _tuning(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per kernel signature chosen from tuning measurements (decisions.jsonl keeps
    the timings the build read from the tuning database), in execution order."""
    entries: dict[str, dict[str, Any]] = {}
    for decision in decisions:
        if decision["action"] != "select_kernel" or "measured" not in decision:
            continue
        key = decision.get("signature", "")
        if key in entries:
            entries[key]["nodes"].extend(decision["nodes"])
            continue
        ok = [m for m in decision["measured"] if m.get("status") == "ok"
              and m.get("median_ms") is not None]
        winner = next((m for m in ok if m["candidate"] == decision["after"]
                       and m.get("params", {}) == decision.get("params", {})), None)
        # identical generated code times identically: the runner-up is the next distinct time
        runner_up = next((m for m in ok if winner is None or m["median_ms"] != winner["median_ms"]),
                         None)
        default = next((m for m in ok if not m.get("params")), None)
        entries[key] = {
            "signature": key, "nodes": list(decision["nodes"]), "winner": winner,
            "runner_up": runner_up,
            "speedup": _ratio(runner_up, winner), "speedup_over_default": _ratio(default, winner),
            "measured": decision["measured"],
        }
    return list(entries.values())


def _ratio(slow: dict[str, Any] | None, fast: dict[str, Any] | None) -> float | None:
    if slow is None or fast is None or not fast["median_ms"]:
        return None
    return round(slow["median_ms"] / fast["median_ms"], 3)


def _node_flops(node: Node, graph: Graph, kernel: str) -> int:
    """The estimate kernel selection used (2 per multiply-add; one per element for simple ops);
    views and in-place results compute nothing."""
    if kernel in ALIAS_KERNELS:
        return 0
    return int(registry.get(node.op).flops(node, graph))


def _fused_nodes(node: Node) -> list[str]:
    """The source nodes this kernel also computes (fused into it), in program order."""
    fused = node.ann.fused_from
    norm = [node.ann.norm_from] if node.ann.norm_from else []
    return [*node.ann.prologue_from, *node.ann.epilogue_from, *norm,
            *(fused if len(fused) > 1 else [])]


def _value(name: str, graph: Graph, placed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ttype = graph.types[name]
    tensor = placed.get(name, {})
    return {"name": name, "dtype": ttype.dtype.value, "shape": list(ttype.shape),
            "bytes": ttype.nbytes, "arena_offset": tensor.get("offset"),
            "alias_of": tensor.get("alias_of")}


def _sizes(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Bytes on disk of the artifact's files (the verified ones and the manifest)."""
    files = {relative: (root / relative).stat().st_size for relative in sorted(manifest["files"])}
    files[MANIFEST] = (root / MANIFEST).stat().st_size
    return {"artifact_bytes": sum(files.values()),
            "weights_bytes": manifest["weights"]["bytes"],
            "library_bytes": files.get(manifest["library"], 0),
            "files": [{"path": path, "bytes": size} for path, size in sorted(files.items())]}


def _passes(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    passes = []
    # the importer logs only what changed the graph (e.g. an If inlined): a row when it did
    importer = ["import"] if any(d["pass"] == "import" for d in decisions) else []
    for name in [*importer, *PASS_NAMES]:
        mine = [d for d in decisions if d["pass"] == name]
        changes = Counter(d["action"] for d in mine if d["action"] not in _SUMMARY_ACTIONS)
        summary = next((d for d in mine if d["action"] == "summary"), None)
        count = next((d for d in mine if d["action"] == "node_count"), {})
        passes.append({"name": name, "changes": dict(sorted(changes.items())),
                       "nodes_before": count.get("before"), "nodes_after": count.get("after"),
                       "summary": None if summary is None else
                       {k: v for k, v in summary.items() if k not in ("pass", "nodes", "action")}})
    return passes


def _fusions(graph: Graph, decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fusions present in the final graph (an elementwise group later absorbed into an
    epilogue is reported once, as part of that epilogue)."""
    reasons, norm_reasons = {}, {}
    for d in decisions:
        if d["action"] in ("fuse_elementwise", "fuse_epilogue", "fuse_prologue"):
            reasons[d["nodes"][0]] = d["reason"]
        elif d["action"] == "fuse_layernorm":
            norm_reasons[d["nodes"][0]] = d["reason"]
    fused = []
    for node in graph.nodes:
        ann = node.ann
        origin = ann.tiled_from or node.name  # a channel slice: its original
        if ann.prologue_from:
            ops = [i.op for i in ann.prologue] + [node.op]
            fused.append({"kind": "prologue", "nodes": [*ann.prologue_from, node.name],
                          "ops": ops, "reason": reasons.get(origin, "")})
        if ann.epilogue_from:
            merged = [node.name, *ann.epilogue_from]
            ops = [node.op] + [i.op for i in ann.epilogue]
            fused.append({"kind": "epilogue", "nodes": merged, "ops": ops,
                          "reason": reasons.get(origin, "")})
        if ann.norm_from:  # a LayerNormalization after it (the CUDA target's fuse_layernorm)
            if not ann.epilogue_from:
                fused.append({"kind": "epilogue", "nodes": [node.name], "ops": [node.op],
                              "reason": ""})
            fused[-1]["nodes"] = [*fused[-1]["nodes"], ann.norm_from]
            fused[-1]["ops"] = [*fused[-1]["ops"], "LayerNormalization"]
            fused[-1]["reason"] = norm_reasons.get(node.name, fused[-1]["reason"])
        elif len(ann.fused_from) > 1:
            merged = list(ann.fused_from)
            ops = [i.op for i in ann.program]
            fused.append({"kind": "elementwise", "nodes": merged, "ops": ops,
                          "reason": reasons.get(merged[0], "")})
    return fused


def _memory(plan: dict[str, Any]) -> dict[str, Any]:
    tensors = plan["tensors"]
    largest = sorted((t for t in tensors if "alias_of" not in t),
                     key=lambda t: (-t["bytes"], t["name"]))[:5]
    return {
        "arena_bytes": plan["arena_bytes"], "no_reuse_bytes": plan["no_reuse_bytes"],
        "lower_bound_bytes": plan["lower_bound_bytes"], "reuse_count": plan["reuse_count"],
        "inplace_count": plan["inplace_count"], "algorithm": plan["algorithm"],
        "alignment": plan["alignment"], "schedule": plan.get("schedule", "given"),
        "what_if": plan.get("what_if", {}), "timeline": "memory_timeline.svg",
        "concat_in_place": sorted(plan.get("concat_slices", {})),
        "largest": [{"name": t["name"], "bytes": t["bytes"]} for t in largest],
        "tensors": [{k: t[k] for k in ("name", "bytes", "offset", "start", "end", "alias_of")
                     if k in t} for t in tensors],
    }


def _symbolic_arena(plan: dict[str, Any], decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """A model with symbolic dims (issue #15): whether its offsets are fixed or computed at run
    time, how the arena is obtained, the arena at each corner of the dims' box, and the sizes
    that make it up at the upper bounds (an expression of the dims)."""
    reason = next((d["reason"] for d in decisions if d["action"] == "symbolic_sizes"), "")
    data = plan.get("runtime_offsets")
    if data is None:
        return {"offsets": "fixed", "arena": "upper bounds", "reason": reason,
                "upper_bound_plan_bytes": plan["arena_bytes"], "points": []}
    runtime = RuntimeOffsets.from_json(data)
    upper = {d.name: d.hi for d in runtime.dims}
    return {
        "offsets": "run time", "arena": data["arena"], "reason": reason,
        "upper_bound_plan_bytes": runtime.fixed_arena_bytes, "blocks": len(runtime.blocks),
        "order_placed_at": runtime.placed_at,
        "points": [{"dims": env, "arena_bytes": runtime.extent_at(env),
                    "lower_bound_bytes": runtime.lower_bound_at(env)} for env in runtime.corners()],
        "at_upper_bounds": runtime.path_expression(runtime.critical_path(upper)),
    }


def report_console() -> Console:
    """A console as wide as the terminal (COLUMNS when set; 120 columns when not a terminal)."""
    return Console(width=shutil.get_terminal_size((120, 24)).columns)


def print_explanation(data: dict[str, Any], console: Console) -> None:
    model = data["model"]
    source_nodes = sum(model["source_ops"].values())
    console.print(f"[bold]{escape(model['file'])}[/bold] (graph {escape(repr(model['graph_name']))}, "
                  f"opset {model['opset']}): {source_nodes} ONNX nodes -> "
                  f"{model['compiled_nodes']} compiled nodes; target {data['target']}, "
                  f"mode {data['mode']} (policy {data.get('policy', data['mode'])})")
    if len(data["targets"]) > 1:
        others = ", then ".join(f"{name} (`pyc explain` its {fallback_dir(name)}/)"
                                for name in data["targets"][1:])
        console.print(escape(f"  targets, tried in order when loaded: {data['target']} (this "
                             f"report), then {others}"), highlight=False)
    for kind in ("inputs", "outputs"):
        listing = ", ".join(f"{t['name']} {t['dtype']}{_shape(t)}" for t in model[kind])
        console.print(escape(f"  {kind}: {listing}"))
    if data.get("dims"):
        bounds = ", ".join(f"{d['name']} {d['lo']}..{d['hi']}" for d in data["dims"])
        console.print(escape(f"  symbolic dims: {bounds} (runs take any shape within them; "
                             "buffers and the arena are sized for the upper bounds)"))
    if "cuda" in data:
        gpu = data["cuda"]
        precision = data.get("flags", {}).get("precision", "fp32")
        if gpu.get("cubin_arch"):  # sm_90a: that GPU only, its PTX JITs for no other
            image = f"{gpu['cubin_arch']} CUBIN (runs on {gpu['arch']} only); PTX ISA {gpu['ptx_isa']}"
        else:
            image = (f"{gpu['arch']} CUBIN; PTX ISA {gpu['ptx_isa']} (JIT on drivers for CUDA "
                     f"{gpu['ptx_min_driver']} or newer)")
        console.print(escape(f"  gpu: {image}; precision {precision}"), highlight=False)
    else:
        cpu = data["cpu"]
        console.print(escape(f"  cpu: {cpu['arch']} -march={cpu['march']} ({cpu['resolved_march']}); "
                             f"needs {', '.join(cpu['features']) or 'nothing beyond the baseline'}"),
                      highlight=False)
    _print_build(data, console)
    table = Table(title="Passes, in order")
    table.add_column("pass")
    table.add_column("nodes", justify="right")
    table.add_column("what it changed")
    for entry in data["passes"]:
        changes = ", ".join(f"{count}x {action}" for action, count in entry["changes"].items())
        summary = entry["summary"]
        if summary:
            changes = (changes + "; " if changes else "") + summary.get("reason", "")
            if "after" in summary:
                changes += f" ({summary['after']})"
        nodes = f"{entry['nodes_before']} -> {entry['nodes_after']}"
        table.add_row(entry["name"], nodes, escape(changes or "nothing to do"))
    console.print(table)
    _print_fusions(data, console)
    _print_kernels(data, console)
    _print_tuning(data["tuning"], console, data["compile_budget"])
    _print_memory(data["memory"], console)
    if "shape_buckets" in data:
        _print_buckets(data["shape_buckets"], console)
    if "feedback" in data:
        _print_feedback(data["feedback"], console)


def _print_feedback(entries: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="Feedback: decisions taken from run telemetry (pyc build --feedback)")
    for column in ("serves", "decision", "why"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        what = entry["action"] + (f" {entry['bucket']}" if "bucket" in entry else "") + (
            f" ({', '.join(entry['nodes'])})" if entry["nodes"] else "")
        table.add_row(escape(entry["serves"]), escape(what), escape(entry["reason"]))
    console.print(table)


def _print_buckets(buckets: dict[str, Any], console: Console) -> None:
    generic = buckets["generic_arena_bytes"]
    table = Table(title="Shape buckets: a run whose dims lie in a bucket's box uses the smallest "
                        "such bucket's plan (static where the box is one shape), any other the "
                        f"generic plan (arena {format_size(generic)})")
    # each bucket's reason follows the table, one line each: as a column it squeezed the box
    # out of an 80-column terminal
    for column in ("bucket", "box / shapes", "weights", "share", "kernels (unlike generic)", "arena",
                   "vs generic"):
        numeric = column in ("share", "kernels (unlike generic)", "arena", "vs generic")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold",
                         min_width=16 if column == "box / shapes" else None)
    for entry in buckets["buckets"]:
        if entry.get("kind") == "symbolic" and entry.get("dims"):  # its box, shared by inputs
            shapes = ", ".join(f"{name}={lo}..{hi}" if lo != hi else f"{name}={lo}"
                               for name, (lo, hi) in entry["dims"].items())
        else:
            shapes = ", ".join(f"{name}[{','.join(map(str, shape))}]"
                               for name, shape in entry["shapes"].items()) + " (static)"
        kernels = f"{entry['compiled_nodes']} ({entry['kernels_unlike_generic']})"
        ratio = f"{entry['arena_bytes'] / generic:.2f}x" if generic else "-"
        weights = "shared" if entry.get("shared_weights") else "own"
        table.add_row(entry["id"], escape(shapes), weights, f"{entry['share']:.1%}",
                      kernels, format_size(entry["arena_bytes"]), ratio)
    console.print(table)
    for entry in buckets["buckets"]:
        console.print(escape(f"  {entry['id']}: {entry['reason']}"), highlight=False)
    for line in buckets["dropped"] + buckets["left_out"]:
        console.print(escape(f"  no bucket: {line}"), highlight=False)


def _shape(entry: dict[str, Any]) -> str:
    """A shape as built: symbolic dims by name (`[batch, 512]`), else the numbers."""
    return "[" + ", ".join(str(d) for d in entry.get("dims", entry["shape"])) + "]"


def _print_build(data: dict[str, Any], console: Console) -> None:
    sizes = data["sizes"]
    toolchain = data["toolchain"]
    console.print(escape(f"  built by pyc {data['pyc_version']} with "
                         f"{toolchain.get('compiler_version') or toolchain.get('compiler', '?')}"))
    console.print(f"  size: artifact {format_size(sizes['artifact_bytes'])} (weights "
                  f"{format_size(sizes['weights_bytes'])}, library "
                  f"{format_size(sizes['library_bytes'])}); "
                  f"{format_count(data['flops_total'], 'FLOP')} per run in "
                  f"{len(data['kernels'])} kernels")
    console.print("  build time: not stored in the artifact, which stays byte-identical across "
                  "builds; `pyc build` prints it (--verbose: per pass)")


def _print_fusions(data: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Fusions ({len(data['fusions'])})")
    table.add_column("kind")
    table.add_column("merged nodes")
    table.add_column("why")
    for fusion in data["fusions"]:
        table.add_row(fusion["kind"], escape(" + ".join(fusion["nodes"])), escape(fusion["reason"]))
    console.print(table)


def _print_kernels(data: dict[str, Any], console: Console) -> None:
    table = Table(title="Kernels (execution order)")
    table.add_column("#", justify="right")
    table.add_column("node")
    table.add_column("kernel")
    table.add_column("FLOPs", justify="right")
    table.add_column("why")
    for kernel in data["kernels"]:
        table.add_row(str(kernel["index"]), escape(kernel["node"]), kernel["kernel"],
                      format_count(kernel["flops"]), escape(kernel["reason"]))
    console.print(table)


def _print_tuning(tuning: list[dict[str, Any]], console: Console,
                  budget: list[str] | None = None) -> None:
    for reason in budget or []:  # what --compile-budget left the tuning
        console.print(escape(reason[0].upper() + reason[1:]))
    if not tuning:
        console.print("Tuning: no kernel was chosen by measurement (`pyc build --tune` measures)")
        return
    table = Table(title=f"Tuning ({len(tuning)} kernel signatures chosen by measurement)")
    table.add_column("signature")
    table.add_column("nodes", justify="right")
    table.add_column("winner")
    table.add_column("runner-up")
    table.add_column("speedup", justify="right")
    for entry in tuning:
        table.add_row(escape(entry["signature"]), str(len(entry["nodes"])),
                      escape(_timed(entry["winner"])), escape(_timed(entry["runner_up"])),
                      "-" if entry["speedup"] is None else f"{entry['speedup']:.2f}x")
    console.print(table)


def _timed(measurement: dict[str, Any] | None) -> str:
    if measurement is None:
        return "-"
    params = ",".join(f"{k}={v}" for k, v in sorted(measurement.get("params", {}).items()))
    label = f"{measurement['candidate']}({params})" if params else measurement["candidate"]
    return f"{label} {measurement['median_ms']:.4g} ms"


def _print_memory(memory: dict[str, Any], console: Console) -> None:
    arena, no_reuse, bound = (memory["arena_bytes"], memory["no_reuse_bytes"],
                              memory["lower_bound_bytes"])
    ratio = f"{arena / bound:.3f}x the lower bound" if bound else "no intermediates"
    console.print(f"[bold]Memory plan[/bold] ({memory['algorithm']}, {memory['alignment']}-byte "
                  f"aligned): arena {format_size(arena)} vs {format_size(no_reuse)} without "
                  f"reuse; lower bound {format_size(bound)} ({ratio}); {memory['reuse_count']} "
                  f"tensors share bytes over time, {memory['inplace_count']} written in place")
    if memory["largest"]:
        console.print(escape("  largest: " + ", ".join(f"{t['name']} ({format_size(t['bytes'])})"
                                                       for t in memory["largest"])))
    if "symbolic_arena" in memory:
        _print_symbolic_arena(memory["symbolic_arena"], memory["alignment"], console)
    if memory["what_if"]:
        table = Table(title=f"Memory by mode (built: {memory['schedule']} schedule; picture: "
                            f"{memory['timeline']})")
        for column in ("mode", "arena", "lower bound", "without reuse"):
            table.add_column(column, justify="left" if column == "mode" else "right")
        for mode, figures in sorted(memory["what_if"].items()):
            table.add_row(mode, format_size(figures["arena_bytes"]),
                          format_size(figures["lower_bound_bytes"]),
                          format_size(figures["no_reuse_bytes"]))
        console.print(table)


def _print_symbolic_arena(arena: dict[str, Any], alignment: int, console: Console) -> None:
    console.print(escape(f"  Arena over the dims: {arena['reason']}"))
    if not arena["points"]:
        return
    points = "; ".join(
        f"{format_size(p['arena_bytes'])} at " + ",".join(f"{k}={v}" for k, v in p["dims"].items())
        + f" (lower bound {format_size(p['lower_bound_bytes'])})" for p in arena["points"])
    console.print(escape(f"  arena by shape: {points}; the fixed upper-bound plan: "
                         f"{format_size(arena['upper_bound_plan_bytes'])}"))
    console.print(escape(f"  its longest path at the upper bounds: {arena['at_upper_bounds']} "
                         f"bytes (each block rounded up to {alignment} B)"))


def explanation_html(artifact: str | Path, data: dict[str, Any]) -> str:
    """A self-contained HTML report with the memory timeline picture inlined."""
    from .templating import template_env

    svg = (Path(artifact) / data["memory"]["timeline"]).read_text()
    return template_env().get_template("report/explain.html.j2").render(d=data, timeline_svg=svg)
