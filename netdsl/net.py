"""Loading: files and imports → elaborated, checked `Net` (the front end's result and the compiler's input)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ast
from .blocks import NetworkParts, check_network, run_body
from .diagnostics import Collector, Diagnostic, InternalError, Span, SpecError
from .elaborate import Elaborator, Frame, Module, Scope
from .ir import IR, ParamSpec, verify
from .ops import Ident
from .values import PoisonError

PRELUDE = Path(__file__).with_name("prelude.net")


@dataclass
class Files:
    """All parsed files of one load: the root and its imports, in load order."""

    modules: list[ast.Module] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)


@dataclass
class Net:
    """A checked network: its IR (with shapes and parameters), its parameter values and its recipe."""

    name: str
    ir: IR
    values: dict[str, Any]  # network parameters after defaults and overrides
    recipe: Any  # netdsl.recipe.Recipe | None
    source: str  # the root file's name
    text: str  # all spec text that went into it (root + imports), for checkpoints
    span: Span | None = None

    @property
    def params(self) -> dict[str, ParamSpec]:
        return self.ir.params

    @property
    def spec_hash(self) -> str:
        """Identifies the network's structure and parameter shapes (not its text layout or comments)."""
        h = hashlib.sha256()
        for n in self.ir:
            h.update(f"{n.op}|{n.name}|{sorted((k, repr(v)) for k, v in n.attrs.items())}|{n.outputs}".encode())
            if n.body is not None:
                h.update(n.body.pretty().encode())
        for p in sorted(self.ir.params.values(), key=lambda p: p.name):
            h.update(f"{p.name}{p.shape}{p.trainable}{p.state}".encode())
        return h.hexdigest()[:16]

    def summary(self, batch: int = 1, depth: int | None = None, memory: bool = True) -> Any:
        from .summary import summarize

        return summarize(self, batch=batch, depth=depth, memory=memory)

    def pretty(self) -> str:
        return self.ir.pretty()

    def __repr__(self) -> str:
        return f"<Net {self.name} from {self.source}: {len(self.ir)} nodes, {len(self.ir.params)} parameter tensors>"

    def _repr_svg_(self) -> str | None:
        """Jupyter: the graph as SVG through Graphviz's `dot` (None when it is not installed)."""
        from .graph import build, graphviz, to_dot

        try:
            return graphviz(to_dot(build(self)), "svg").decode("utf-8")
        except (FileNotFoundError, RuntimeError, OSError):
            return None

    def _repr_html_(self) -> str:
        """Jupyter: the graph drawn by netdsl itself (the SVG of `netdsl graph -o page.html`), no Graphviz needed."""
        from .graph import build, svg_fragment

        return svg_fragment(build(self))


# ====================================================================== files and imports


def _parse(text: str, name: str) -> ast.Module:
    from .parser import parse

    return parse(text, name)


def read_files(text: str, name: str, root_dir: Path | None, allow: list[Path]) -> Files:
    """Parse a root text and, recursively, its imports (relative to the importing file; no cycles)."""
    files = Files()
    _load(text, name, root_dir, allow, files, stack=(), seen=set())
    return files


def _load(text: str, name: str, base: Path | None, allow: list[Path], files: Files, stack: tuple[str, ...],
          seen: set[str]) -> None:
    module = _parse(text, name)
    files.sources[name] = text
    errors = Collector()
    for imp in module.imports:
        if base is None:
            errors.add(Diagnostic(imp.span, "import needs a file: this spec was given as a string",
                                  "load it from a file, or pass its directory"))
            continue
        target = (base / imp.path).resolve()
        key = str(target)
        roots = [base.resolve()] + [a.resolve() for a in allow]
        if not any(target == r or r in target.parents for r in roots):
            errors.add(Diagnostic(imp.span, f'import "{imp.path}" leaves the spec\'s directory ({base.resolve()})',
                                  "imports stay inside the importing file's directory tree; "
                                  "allow another directory with --allow-path DIR"))
            continue
        if key in stack:
            chain = " → ".join(Path(s).name for s in stack[stack.index(key):]) + f" → {Path(key).name}"
            errors.add(Diagnostic(imp.span, f"import cycle: {chain}", "remove one of the imports"))
            continue
        if key in seen:
            continue
        if not target.is_file():
            errors.add(Diagnostic(imp.span, f'cannot import "{imp.path}": no such file ({target})'))
            continue
        try:
            sub = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.add(Diagnostic(imp.span, f'cannot read "{imp.path}": {exc}'))
            continue
        seen.add(key)
        try:
            _load(sub, _display(target), target.parent, allow, files, stack + (key,), seen)
        except SpecError as err:
            errors.add(err)
    errors.raise_if_any()
    files.modules.append(module)


def _display(p: Path) -> str:
    try:
        return os.path.relpath(p)
    except ValueError:
        return str(p)


_PRELUDE_CACHE: list[ast.Module] = []


def _prelude() -> ast.Module:
    if not _PRELUDE_CACHE:
        _PRELUDE_CACHE.append(_parse(PRELUDE.read_text(encoding="utf-8"), "<prelude>"))
    return _PRELUDE_CACHE[0]


def _module(files: Files) -> tuple[Module, Collector]:
    errors = Collector()
    prelude = _prelude()
    blocks: dict[str, ast.Block] = {b.name: b for b in prelude.blocks}
    standard = Module(dict(blocks), prelude=set(blocks))
    mod = Module(blocks, prelude=set(blocks), standard=standard)
    where: dict[str, ast.Block] = {}
    for m in files.modules:
        for b in m.blocks:
            if b.name in where:
                prev = where[b.name].span
                errors.add(Diagnostic(b.span, f"'{b.name}' is defined twice (first at {prev})"))
                continue
            where[b.name] = b
            blocks[b.name] = b  # shadows the prelude
            mod.prelude.discard(b.name)
    return mod, errors


# ====================================================================== networks


def _pick(files: Files, network: str | None) -> ast.Network:
    root = files.modules[-1]
    nets = root.networks or [n for m in files.modules for n in m.networks]
    if network is not None:
        for m in files.modules:
            for n in m.networks:
                if n.name == network:
                    return n
        names = ", ".join(n.name for m in files.modules for n in m.networks) or "none"
        raise SpecError(Diagnostic(None, f"{root.source_name}: no network named '{network}' (networks: {names})"))
    if not nets:
        raise SpecError(Diagnostic(None, f"{root.source_name}: the file defines no network",
                                   "add: network Name { input …  output … }"))
    if len(root.networks) > 1:
        names = ", ".join(n.name for n in root.networks)
        raise SpecError(Diagnostic(root.networks[1].span, f"the file defines several networks ({names})",
                                   "pick one with --network NAME"))
    return nets[0]


def elaborate_network(files: Files, network: str | None, overrides: dict[str, Any]) -> Net:
    mod, errors = _module(files)
    errors.raise_if_any()
    net_ast = _pick(files, network)
    el = Elaborator(mod)
    ir = IR()
    frame = Frame(ir)
    scope = Scope(mod)
    values = _network_params(el, net_ast, scope, frame, overrides)
    parts = NetworkParts()
    run_body(el, net_ast.body, scope, frame, None, parts)
    check_network(el, net_ast, scope, frame, parts)
    from .recipe import recipe_for

    recipe = None
    try:  # the recipes' errors are independent of the network's: report them together
        recipe = recipe_for(files, net_ast.name)
    except SpecError as err:
        parts.collector.add(err)
    parts.collector.raise_if_any()
    verify(ir)
    root = files.modules[-1].source_name
    return Net(net_ast.name, ir, values, recipe, root, "\n".join(files.sources.values()), net_ast.span)


def _network_params(el: Elaborator, net: ast.Network, scope: Scope, frame: Frame,
                    overrides: dict[str, Any]) -> dict[str, Any]:
    names = [p.name for p in net.params]
    errors = Collector()
    for k in overrides:
        if k not in names:
            hint = el.suggest(k, names) or (f"its parameters: {', '.join(names)}" if names else
                                            f"network {net.name} has no parameters")
            errors.add(Diagnostic(net.span, f"network {net.name} has no parameter '{k}' (given with --set)", hint))
    errors.raise_if_any()
    values: dict[str, Any] = {}
    for p in net.params:
        if p.name in overrides:
            v = overrides[p.name]
        elif p.default is not None:
            try:
                v = el.eval(p.default, scope, frame, ident_ok=True)
            except PoisonError:
                v = None
        else:
            raise SpecError(Diagnostic(p.span, f"network parameter '{p.name}' has no value",
                                       f"give it a default ({p.name}=…) or set it: --set {p.name}=…"))
        if isinstance(v, Ident) and v.name == "auto":
            raise SpecError(Diagnostic(p.span, f"network parameter '{p.name}' is auto: it takes its value from a "
                                       "dataset, and none was given", f"set it: --set {p.name}=N, or train with data"))
        if isinstance(v, Ident) and v.name != "same":  # `same` is an attribute value (pad=same)
            if p.name in overrides:
                raise SpecError(Diagnostic(p.span, f"--set {p.name}={v.name}: '{v.name}' is not a value",
                                           f"write a number, true or false, or quote a string: "
                                           f"--set {p.name}='\"{v.name}\"'"))
            raise SpecError(Diagnostic(p.default.span if p.default else p.span, f"unknown name '{v.name}'"))
        scope.vars[p.name] = v
        values[p.name] = v
    return values


# ====================================================================== entry points


def loads(text: str, name: str = "<string>", *, network: str | None = None, base_dir: str | os.PathLike | None = None,
          allow_paths: list[str] | None = None, **params: Any) -> Net:
    """Parse, elaborate and check spec text. Raises `SpecError` with every diagnostic found."""
    base = Path(base_dir) if base_dir is not None else None
    allow = [Path(a) for a in (allow_paths or [])]
    try:
        files = read_files(text, name, base, allow)
        return elaborate_network(files, network, params)
    except (SpecError, InternalError):
        raise
    except RecursionError:
        raise SpecError(Diagnostic(None, f"{name}: the spec is nested too deeply to elaborate")) from None
    except Exception as exc:  # a bug in netdsl: never dressed up as a spec error
        raise InternalError(f"{type(exc).__name__}: {exc}") from exc


def load(path: str | os.PathLike, *, network: str | None = None, allow_paths: list[str] | None = None,
         **params: Any) -> Net:
    """Load a .net file (and its imports)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(Diagnostic(None, f"{path}: no such file")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(Diagnostic(None, f"{path}: cannot read the spec: {exc}")) from None
    return loads(text, str(path), network=network, base_dir=p.parent, allow_paths=allow_paths, **params)
