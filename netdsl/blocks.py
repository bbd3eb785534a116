"""Elaboration of bodies: block uses (arguments, contracts), cells and unrolls, statements, and networks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import ast
from .diagnostics import Collector, Diagnostic, SpecError, UseSite
from .elaborate import MAX_STEPS, Elaborator, Frame, Scope
from .ir import IR, TensorType, Value
from .ops import Ident
from .values import (
    POISON,
    BlockLayer,
    OpLayer,
    Poison,
    PoisonError,
    SharedLayer,
    Tensor,
    TupleVal,
    UnrollResult,
    describe,
)


def bind_args(el: Elaborator, f: BlockLayer, frame: Frame, scope: Scope) -> None:
    """Bind a block's or cell's parameters (positional, named, defaults) into `scope`."""
    b = f.block
    kind = "cell" if b.is_cell else "block"
    names = [p.name for p in b.params]
    if len(f.args) > len(names):
        raise el.err(frame, f.span, f"{kind} {b.name} takes {len(names)} argument{'s' * (len(names) != 1)}, "
                     f"found {len(f.args)}", f"parameters: {', '.join(names)}" if names else None)
    given: dict[str, Any] = dict(zip(names, f.args, strict=False))
    for k, (v, span) in f.kwargs.items():
        if k not in names:
            raise el.err(frame, span, f"{kind} {b.name} has no parameter '{k}'",
                         el.suggest(k, names) or (f"parameters: {', '.join(names)}" if names else None))
        if k in given:
            raise el.err(frame, span, f"argument '{k}' of {b.name} is given twice")
        given[k] = v
    for p in b.params:
        if p.name in given:
            v = given[p.name]
            if isinstance(v, Ident) and v.name != "same":  # `same` is an attribute value (pad=same)
                raise el.err(frame, f.span, f"unknown name '{v.name}' given as argument '{p.name}' of {b.name}")
            scope.vars[p.name] = el.tensorish(v)
        elif p.default is not None:
            scope.vars[p.name] = el.eval(p.default, scope, frame, ident_ok=True)
        else:
            raise el.err(frame, f.span, f"{kind} {b.name} is missing the argument '{p.name}'",
                         f"write {b.name}({', '.join(names)})")


def bind_contract(el: Elaborator, decl: ast.InputDecl, t: TensorType, scope: Scope, frame: Frame,
                  use: ast.Expr, block: ast.Block, bound: dict[str, int]) -> None:
    """Match an input against `x: [C, H, W]`: unknown names bind to the input's sizes, the rest must agree."""
    if decl.type is None:
        return
    want = decl.type
    contract = f"{block.name}'s contract {decl.name}: {_type_text(want)}"
    if want.is_int != t.is_int or len(want.dims) != t.rank:
        raise el.err(frame, use.span, f"input {t.spec()} breaks {contract}",
                     notes=[f"{block.name} is defined at {block.span}"])
    for d, actual in zip(want.dims, t.shape, strict=True):
        if isinstance(d, ast.Name) and d.id not in scope.vars and not _defined_above(d.id, scope):
            scope.vars[d.id] = actual
            bound[d.id] = actual
            continue
        v = el.dim(d, scope, frame)
        if v != actual:
            binding = ", ".join(f"{k}={v}" for k, v in bound.items())
            raise el.err(frame, use.span, f"input {t.spec()} breaks {contract}: expected {v}, found {actual}"
                         + (f" (with {binding})" if binding else ""), notes=[f"{block.name} is defined at {block.span}"])


def _defined_above(name: str, scope: Scope) -> bool:
    try:
        scope.lookup(name)
        return True
    except KeyError:
        return False


def _type_text(t: ast.TypeExpr) -> str:
    src = t.span.source.line(t.span.line)
    if t.span.end_line == t.span.line:
        return src[t.span.col - 1 : t.span.end_col - 1]
    return ("int" if t.is_int else "") + "[…]"


def apply_block(el: Elaborator, f: BlockLayer, inputs: list[Tensor], e: ast.Expr, frame: Frame,
                label: ast.Labeled | None, fixed_name: str | None = None,
                alias: tuple[str, str] | None = None) -> Any:
    b = f.block
    if b.is_cell:
        raise el.err(frame, e.span, f"{b.name} is a cell: run it over a sequence",
                     f"ys = unroll {b.name}(…) over xs")
    if b.name in frame.stack:
        chain = " → ".join(frame.stack[frame.stack.index(b.name):] + (b.name,))
        raise el.err(frame, e.span, f"recursion in blocks: {chain}", "a block cannot use itself")
    if len(inputs) != len(b.inputs):
        raise el.err(frame, e.span, f"block {b.name} takes {len(b.inputs)} input{'s' * (len(b.inputs) != 1)}, "
                     f"found {len(inputs)}")
    if f.transparent and label is None and fixed_name is None:
        name = el.node_name(frame, None, b.name.lower(), e.span)
    else:
        name = fixed_name or el.node_name(frame, label, b.name, e.span)
    use = UseSite(b.name, e.span, name)
    if f.transparent:  # the prelude's `lstm(h)`: its one unroll is named as the use (`enc.f.weight`)
        # the use stays in the chain, so that errors inside the prelude point back at the user's spec
        child = Frame(frame.ir, frame.prefix, frame.block_path, frame.uses + (use,), frame.stack + (b.name,),
                      names=frame.names, budget=frame.budget, pending=name, alias=alias or frame.alias)
    else:
        child = frame.child(name, use, b.name)
        child.alias = alias or frame.alias
    scope = Scope(f.module)
    bind_args(el, f, frame, scope)  # argument errors are at the use site: no chain through the use itself
    bound: dict[str, int] = {}
    for decl, t in zip(b.inputs, inputs, strict=True):
        bind_contract(el, decl, t.type, scope, frame, e, b, bound)
        scope.vars[decl.name] = t
    results = run_body(el, b.body, scope, child, b)
    if b.results is not None:
        check_results(el, b, results, scope, frame, e, bound)
    return results[0] if len(results) == 1 else TupleVal(tuple(results))


def check_results(el: Elaborator, b: ast.Block, results: list[Any], scope: Scope, frame: Frame, use: ast.Expr,
                  bound: dict[str, int]) -> None:
    binding = ", ".join(f"{k}={v}" for k, v in bound.items())
    with_ = f" (with {binding})" if binding else ""
    if len(results) != len(b.results):
        raise el.err(frame, use.span, f"block {b.name} returns {len(results)} values, its contract declares "
                     f"{len(b.results)}")
    for r, want in zip(results, b.results, strict=True):
        t = el.as_tensor(r, use, frame)
        try:
            dims = [el.dim(d, scope, frame) for d in want.dims]
        except SpecError as s:
            raise el.err(frame, use.span, f"this use breaks {b.name}'s contract -> {_type_text(want)}{with_}: "
                         + s.diagnostics[0].message, notes=[f"{b.name} is defined at {b.span}"]) from None
        if tuple(dims) != t.type.shape or want.is_int != t.type.is_int:
            shown = ("int" if want.is_int else "") + "[" + ", ".join(map(str, dims)) + "]"
            raise el.err(frame, use.span, f"this use breaks {b.name}'s contract -> {_type_text(want)}{with_}: "
                         f"it promises {shown}, the body gives {t.type.spec()}",
                         notes=[f"{b.name} is defined at {b.span}"])


# ====================================================================== unroll


def unroll(el: Elaborator, e: ast.Unroll, scope: Scope, frame: Frame, label: ast.Labeled | None) -> UnrollResult:
    cell = el.eval(e.cell, scope, frame)
    if not (isinstance(cell, BlockLayer) and cell.block.is_cell):
        hint = "define it with `cell Name(params)(x, state: [dims]) { … }`" if isinstance(cell, BlockLayer) else None
        raise el.err(frame, e.cell.span, f"unroll needs a cell, found {describe(cell)}", hint)
    b = cell.block
    seq = el.as_tensor(el.eval(e.over, scope, frame), e.over, frame)
    if seq.type.rank < 1 or (not seq.type.is_int and seq.type.rank < 2):
        raise el.err(frame, e.over.span, f"unroll runs over a sequence [T, D] (or ids int[T]), found {seq.type.spec()}",
                     "a sequence has a time axis first: [T, D]")
    steps = seq.type.shape[0]
    if steps > MAX_STEPS:
        raise el.err(frame, e.over.span, f"an unroll of {steps:,} steps is too long (at most {MAX_STEPS:,})")
    if steps < 1:
        raise el.err(frame, e.over.span, "unroll over a sequence of 0 steps")
    if b.name in frame.stack:
        raise el.err(frame, e.span, f"recursion: cell {b.name} unrolls itself")
    if frame.pending and label is None:
        name, frame.pending = frame.pending, None
    else:
        name = el.node_name(frame, label, "unroll", e.span)
    cscope = Scope(cell.module)
    bind_args(el, cell, frame, cscope)
    if len(b.inputs) < 2:
        raise el.err(frame, e.cell.span, f"cell {b.name} needs a step input and at least one state input",
                     "cell Name(params)(x, h: [hidden]) { … }")
    state_types: list[TensorType] = []
    for decl in b.inputs[1:]:
        if decl.type is None:
            raise el.err(frame, decl.span, f"state '{decl.name}' of cell {b.name} needs a declared shape",
                         f"write {decl.name}: [hidden]")
        dims = tuple(el.dim(d, cscope, frame) for d in decl.type.dims)
        state_types.append(TensorType(dims, "int64" if decl.type.is_int else "float32"))
    inits: list[Tensor] = []
    if e.start is not None:
        start = el.eval(e.start, scope, frame)
        items = list(start.items) if isinstance(start, TupleVal) else [el.tensorish(start)]
        if len(items) != len(state_types):
            raise el.err(frame, e.start.span, f"cell {b.name} has {len(state_types)} state"
                         f"{'s' * (len(state_types) != 1)}, 'from' gives {len(items)}")
        for item, st, decl in zip(items, state_types, b.inputs[1:], strict=True):
            t = el.as_tensor(item, e.start, frame)
            if t.type.shape != st.shape:
                raise el.err(frame, e.start.span, f"state '{decl.name}' of cell {b.name} is {st.spec()}, "
                             f"'from' gives {t.type.spec()}")
            inits.append(t)
    body = IR(params=frame.ir.params)
    use = UseSite(b.name, e.span, name)
    bframe = Frame(body, name + ".", name, frame.uses + (use,), frame.stack + (b.name,), names=frame.names,
                   budget=frame.budget, alias=frame.alias)
    step_type = TensorType(seq.type.shape[1:], seq.type.dtype)
    x_decl = b.inputs[0]
    bound: dict[str, int] = {}
    bind_contract(el, x_decl, step_type, cscope, frame, e.over, b, bound)
    for i, (decl, t) in enumerate(zip(b.inputs, [step_type] + state_types, strict=True)):
        nid = body.add("input", [], {"name": decl.name, "index": i}, decl.span, [t], name=f"{name}.{decl.name}")
        cscope.vars[decl.name] = Tensor(Value(nid), t, body)
    results = run_body(el, b.body, cscope, bframe, b)
    if len(results) != 2:
        raise el.err(frame, e.span, f"cell {b.name} must return (output, new state), it returns {len(results)} "
                     f"value{'s' * (len(results) != 1)}", "return h, h   or   return h, (h, c)",
                     notes=[f"{b.name} is defined at {b.span}"])
    y = el.as_tensor(results[0], e, frame)
    new_state = results[1]
    states = list(new_state.items) if isinstance(new_state, TupleVal) else [el.tensorish(new_state)]
    if len(states) != len(state_types) or any(
        not isinstance(s, Tensor) or s.type.shape != st.shape for s, st in zip(states, state_types, strict=False)
    ):
        found = ", ".join(s.type.spec() if isinstance(s, Tensor) else describe(s) for s in states)
        want = ", ".join(f"{d.name}: {t.spec()}" for d, t in zip(b.inputs[1:], state_types, strict=True))
        raise el.err(frame, e.span, f"cell {b.name} returns the wrong state: declared ({want}), returned ({found})",
                     "the second returned value is the new state, one tensor per state input, in order",
                     notes=[f"{b.name} is defined at {b.span}"])
    body.outputs["y"] = y.value
    for i, s in enumerate(states):
        body.outputs[f"state{i}"] = s.value
    ys_type = TensorType((steps,) + y.type.shape, y.type.dtype)
    el.guard_size(ys_type, e.span, frame, f"unroll '{name}'")
    attrs = {"steps": steps, "reverse": e.reverse, "cell": b.name, "prelude": b.name in cell.module.prelude
             and cell.module.blocks.get(b.name) is b, "states": len(states), "init": bool(inits)}
    el.count_node(frame, e.span)
    nid = frame.ir.add("unroll", [seq.value] + [t.value for t in inits], attrs, e.span,
                       [ys_type] + state_types, name=name, uses=frame.uses, block=frame.block_path, body=body)
    ys = Tensor(Value(nid, 0), ys_type, frame.ir)
    finals = [Tensor(Value(nid, i + 1), st, frame.ir) for i, st in enumerate(state_types)]
    return UnrollResult(ys, finals[0] if len(finals) == 1 else TupleVal(tuple(finals)))


# ====================================================================== statements


@dataclass
class NetworkParts:
    """What a network's body declares, filled by `run_body` in network mode."""

    inputs: dict[str, tuple[int, ast.InputStmt]] = field(default_factory=dict)
    collector: Collector = field(default_factory=Collector)


def run_body(el: Elaborator, stmts: list[ast.Stmt], scope: Scope, frame: Frame, block: ast.Block | None,
             net: NetworkParts | None = None) -> list[Any]:
    """Run statements. In a block or cell the first error propagates; in a network errors are collected."""
    results: list[Any] | None = None
    for st in stmts:
        if results is not None:
            raise el.err(frame, st.span, "this statement comes after 'return' and would never run")
        try:
            results = _statement(el, st, scope, frame, block, net)
        except PoisonError:
            _poison(st, scope)
        except SpecError as err:
            if net is None:
                raise
            net.collector.add(err)
            _poison(st, scope)
    if block is not None and results is None:
        raise el.err(frame, block.span, f"{'cell' if block.is_cell else 'block'} {block.name} has no 'return'",
                     "end the body with: return value")
    return results or []


def _poison(st: ast.Stmt, scope: Scope) -> None:
    if isinstance(st, ast.Assign):
        for t in st.targets:
            scope.vars[t] = POISON
    elif isinstance(st, (ast.Let, ast.OutputStmt, ast.InputStmt)) and getattr(st, "name", None):
        scope.vars[st.name] = POISON


def _statement(el: Elaborator, st: ast.Stmt, scope: Scope, frame: Frame, block: ast.Block | None,
               net: NetworkParts | None) -> list[Any] | None:
    if isinstance(st, ast.Assign):
        v = el.eval(st.value, scope, frame)
        if len(st.targets) == 1:
            scope.vars[st.targets[0]] = el.tensorish(v)
            return None
        items: list[Any]
        if isinstance(v, UnrollResult):
            items = [v.ys, v.final]
        elif isinstance(v, TupleVal):
            items = list(v.items)
        else:
            raise el.err(frame, st.value.span, f"{len(st.targets)} names, but the value is {describe(v)}")
        if len(items) != len(st.targets):
            raise el.err(frame, st.value.span, f"{len(st.targets)} names, but the value has {len(items)} parts")
        for name, item in zip(st.targets, items, strict=True):
            scope.vars[name] = item
        return None
    if isinstance(st, ast.Let):
        v = el.eval(st.value, scope, frame)
        if not isinstance(v, (OpLayer, BlockLayer)):
            raise el.err(frame, st.value.span, f"let binds a layer, found {describe(v)}",
                         f"write {st.name} = … for values")
        if not v.built and [p for p in (v.op.required if isinstance(v, OpLayer) else
                                        [q.name for q in v.block.params if q.default is None])]:
            raise el.err(frame, st.value.span, f"{v.display} needs its settings here: let {st.name} = {v.display}(…)")
        if frame.prefix + st.name in frame.names:
            raise el.err(frame, st.span, f"duplicate label '{st.name}'")
        frame.names[frame.prefix + st.name] = st.span
        scope.vars[st.name] = SharedLayer(frame.prefix + st.name, v, st.span)
        return None
    if isinstance(st, ast.Return):
        if block is None:
            raise el.err(frame, st.span, "'return' is only allowed in a block or cell",
                         "a network declares 'output' and 'loss'")
        return [el.eval(x, scope, frame) for x in st.values]
    if isinstance(st, ast.ExprStmt):
        raise el.err(frame, st.span, "this expression's value is never used", "bind it: name = …")
    if net is None:
        what = type(st).__name__.replace("Stmt", "").lower()
        raise el.err(frame, st.span, f"'{what}' is only allowed in a network, not in a block")
    return _network_statement(el, st, scope, frame, net)


def _network_statement(el: Elaborator, st: ast.Stmt, scope: Scope, frame: Frame, net: NetworkParts) -> None:
    ir = frame.ir
    if isinstance(st, ast.InputStmt):
        if st.name in net.inputs:
            prev = net.inputs[st.name][1].span
            raise el.err(frame, st.span, f"input '{st.name}' is declared twice (first at {prev.line}:{prev.col})")
        dims = tuple(el.dim(d, scope, frame) for d in st.type.dims)
        t = TensorType(dims, "int64" if st.type.is_int else "float32")
        el.guard_size(t, st.type.span, frame, f"input '{st.name}'")
        if st.name in frame.names:  # node names are unique: inputs, labels and generated names alike
            prev = frame.names[st.name]
            raise el.err(frame, st.span, f"input '{st.name}' has the name of a layer (at {prev.line}:{prev.col})")
        frame.names[st.name] = st.span
        nid = ir.add("input", [], {"name": st.name}, st.span, [t], name=st.name)
        ir.inputs[st.name] = nid
        net.inputs[st.name] = (nid, st)
        scope.vars[st.name] = Tensor(Value(nid), t, ir)
        scope.used.discard(st.name)
        return
    if isinstance(st, ast.OutputStmt):
        if st.name in ir.outputs:
            raise el.err(frame, st.span, f"output '{st.name}' is declared twice")
        if st.value is not None:
            v = el.as_tensor(el.eval(st.value, scope, frame), st.value, frame)
            scope.vars[st.name] = v
        else:
            try:
                v = el.as_tensor(scope.lookup(st.name), st, frame)
            except KeyError:
                raise el.err(frame, st.span, f"unknown name '{st.name}'",
                             el.suggest(st.name, scope.known_names())) from None
        ir.outputs[st.name] = v.value
        return
    if isinstance(st, ast.LossStmt):
        if ir.loss is not None:
            raise el.err(frame, st.span, "a network has at most one 'loss'", "sum the terms: loss a + 0.1 * b")
        v = el.as_tensor(el.eval(st.value, scope, frame), st.value, frame)
        if v.type.batched or v.type.shape != ():
            raise el.err(frame, st.value.span, f"the loss must be a scalar, found {v.type.spec()} per example",
                         "use a loss layer: cross_entropy(logits, label) or mse(pred, target)")
        ir.loss = v.value
        return
    raise el.err(frame, st.span, f"unexpected statement {type(st).__name__}")


def check_network(el: Elaborator, net_ast: ast.Network, scope: Scope, frame: Frame, parts: NetworkParts) -> None:
    """Whole-network checks once the body ran: unused inputs, something to compute."""
    poisoned = any(isinstance(v, Poison) for v in scope.vars.values())
    for name, (nid, st) in parts.inputs.items():
        if name not in scope.used and not frame.ir.users(nid) and not poisoned:
            parts.collector.add(Diagnostic(st.span, f"input '{name}' is never used",
                                           "remove it, or use it in the network"))
    if not frame.ir.outputs and frame.ir.loss is None and not parts.collector.diagnostics:
        parts.collector.add(Diagnostic(net_ast.span, f"network {net_ast.name} has no output and no loss",
                                       "add: output name   (and: loss cross_entropy(logits, label))"))
