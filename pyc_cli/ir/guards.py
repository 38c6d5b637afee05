"""Which nodes run under which run-time conditions (an If whose condition is computed at run time).

The importer inlines both branches of such an If and adds a `pyc.If` node selecting their
outputs (ops/control_flow.py). Rather than carrying a "this node belongs to branch X" mark
through every pass (a rewrite, a fusion or a decomposition would have to keep it), the
condition under which a node must run is *derived* from the final graph: a node is needed
where one of its outputs is, a graph output always, and a pyc.If needs its then-operands only
where its condition holds and its else-operands only where it does not. A fused or rewritten
node is then guarded by what its readers need, whatever the passes did.

A condition is a disjunction of conjunctions of literals `(value, polarity)` over the bool
scalars pyc.If nodes read; `ALWAYS` (None) is unconditional. A node is guarded only where
every condition value it tests is computed before it in the schedule (the value is then live
there: its last reader is the pyc.If, which the node feeds); otherwise it runs always, and so
do its producers (a node that runs has its inputs computed). Results are deterministic: terms
sorted by their literals.
"""

from __future__ import annotations

from .graph import Graph

Literal = tuple[str, bool]
Term = frozenset[Literal]
# None: always; else the terms of a disjunction (an empty set: never needed)
Condition = frozenset[Term] | None
ALWAYS: Condition = None
# more terms than this: the node runs always (a guard longer than the work it saves)
MAX_TERMS = 8
SELECT_OP = "pyc.If"


def run_conditions(graph: Graph, demote: bool = True) -> dict[str, Condition]:
    """Node name -> the condition under which it must run (ALWAYS for most nodes). Without
    `demote`, the condition under which it is needed, even where a condition it tests is
    computed after it (it then runs always: `deferred_steps` asks which nodes those are)."""
    position = {v: -1 for v in [*graph.inputs, *graph.constants]}
    for index, node in enumerate(graph.nodes):
        for out in node.outputs:
            if out:
                position[out] = index
    needed: dict[str, Condition] = {v: ALWAYS for v in graph.outputs}
    result: dict[str, Condition] = {}
    for index in range(len(graph.nodes) - 1, -1, -1):
        node = graph.nodes[index]
        cond = _node_condition(node.outputs, needed)
        if demote and cond is not None and any(position.get(value, index) >= index
                                      for term in cond for value, _ in term):
            cond = ALWAYS  # a condition computed later (or never) cannot guard this node
        result[node.name] = cond
        count = len(node.outputs) if node.op == SELECT_OP else 0
        for slot, value in enumerate(node.inputs):
            if not value:
                continue
            edge = cond
            if count and slot > 0:  # a branch operand: needed only where its branch is taken
                edge = _and(cond, (node.inputs[0], slot <= count))
            needed[value] = _or(needed[value], edge) if value in needed else edge
    return result


def deferred_steps(graph: Graph) -> dict[int, int]:
    """The entry steps (graph.entry_steps, by index) of nodes inside a run-time If branch that
    the run checks where it takes the branch rather than at entry, each with the position in
    graph.nodes before which it is checked: right after the last condition it tests is
    computed. A check stays at entry (absent here) where that would be too late: a node needed
    only where the step's branch is taken sits before that position (it runs unguarded, maybe
    on the sizes the check refuses), or a condition value is no longer in the graph. A "dim"
    or "bcast" step of a deferred check still sets its dim at entry, without refusing."""
    steps = graph.entry_steps
    if not any(step.guard for step in steps) or not is_guarded(graph):
        return {}
    position = {v: -1 for v in [*graph.inputs, *graph.constants]}
    for index, node in enumerate(graph.nodes):
        for out in node.outputs:
            if out:
                position[out] = index
    needed = run_conditions(graph, demote=False)
    found: dict[int, int] = {}
    for k, step in enumerate(steps):
        if not step.guard:  # always (None), or never needed (an empty condition)
            continue
        tested = variables(step.guard)
        if any(value not in position for value in tested):
            continue
        start = max(position[value] for value in tested) + 1
        if any(_within(needed.get(node.name), step.guard) for node in graph.nodes[:start]):
            continue
        found[k] = start
    return found


def _within(cond: Condition, branch: Condition) -> bool:
    """Whether `cond` holds only where `branch` does (each of its terms holds a term of it)."""
    return bool(cond) and bool(branch) and all(
        any(other <= term for other in branch) for term in cond)  # type: ignore[union-attr]


def is_guarded(graph: Graph) -> bool:
    """Whether the graph has a run-time If (else every node runs always, unexamined)."""
    return any(node.op == SELECT_OP for node in graph.nodes)


def exclusive(left: Condition, right: Condition) -> bool:
    """Whether two conditions never hold in the same run: every term of one contradicts every
    term of the other (a literal of one is negated in the other). What the memory planner
    needs: values needed under exclusive conditions are never both computed in one run, so
    they may share bytes even where their lifetimes overlap in the schedule."""
    if left is None or right is None:
        return False
    return all(any((value, not polarity) in b for value, polarity in a)
               for a in left for b in right)


def implies(cond: Condition, literal: Literal) -> bool:
    """Whether `cond` holds only where `literal` does (every term contains it)."""
    return cond is not None and bool(cond) and all(literal in term for term in cond)


def holds(cond: Condition, assignment: dict[str, bool]) -> bool:
    """Whether `cond` holds for these values of the condition scalars (those absent: false)."""
    if cond is None:
        return True
    return any(all(assignment.get(value, False) == polarity for value, polarity in term)
               for term in cond)


def variables(cond: Condition) -> set[str]:
    """The condition scalars a condition tests."""
    return {value for term in cond for value, _ in term} if cond else set()


def any_of(conds: list[Condition]) -> Condition:
    """The disjunction of conditions (ALWAYS where one is; never for none)."""
    result: Condition = frozenset()
    for cond in conds:
        result = _or(result, cond)
    return result


def _node_condition(outputs: list[str], needed: dict[str, Condition]) -> Condition:
    found = [needed[out] for out in outputs if out in needed]
    if not found:
        return ALWAYS  # read by nothing: dead code elimination's business, not a guard's
    cond: Condition = frozenset()
    for each in found:
        cond = _or(cond, each)
    return cond


def _and(cond: Condition, literal: Literal) -> Condition:
    if cond is None:
        return frozenset({frozenset({literal})})
    terms = set()
    for term in cond:
        if (literal[0], not literal[1]) in term:
            continue  # contradictory: this term never holds with the literal
        terms.add(term | {literal})
    return _simplify(terms)


def _or(left: Condition, right: Condition) -> Condition:
    if left is None or right is None:
        return ALWAYS
    return _simplify(set(left) | set(right))


def _simplify(terms: set[Term]) -> Condition:
    """Absorption (x | x&y = x) and merging (x&c | x&!c = x), to a fixed point; ALWAYS where a
    term is empty or there are too many."""
    changed = True
    while changed:
        changed = False
        for a in sorted(terms, key=_key):
            for b in sorted(terms, key=_key):
                if a is b or a not in terms or b not in terms:
                    continue
                if a < b:
                    terms.discard(b)
                    changed = True
                elif len(a) == len(b) and len(a ^ b) == 2 and _complementary(a - b, b - a):
                    terms.difference_update({a, b})
                    terms.add(a & b)
                    changed = True
    if any(not term for term in terms) or len(terms) > MAX_TERMS:
        return ALWAYS
    return frozenset(terms)


def _complementary(left: Term, right: Term) -> bool:
    ((value_a, pol_a),), ((value_b, pol_b),) = left, right
    return value_a == value_b and pol_a != pol_b


def _key(term: Term) -> list[Literal]:
    return sorted(term)


def sorted_terms(cond: frozenset[Term]) -> list[list[Literal]]:
    """The terms in a fixed order (for rendering: deterministic C)."""
    return sorted(sorted(term) for term in cond)
