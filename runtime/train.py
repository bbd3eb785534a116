"""The training loop: `train(spec or Net, …) -> history`, as `netdsl train` runs it.

Every step: a batch (a pure function of the seed, the epoch and the position), one train-mode forward and
backward (`Program.step_grads`, dropout seeded by (seed, step, node)), the schedule's learning rate, and the
fused optimizer update. Once per epoch (or every `every` steps) and at the end: evaluation on the held-out
part, one line in `DIR/metrics.jsonl`, a checkpoint, and `DIR/curves.png`. Resuming restores parameters,
optimizer state, schedule state and the step, so the run goes on exactly as if it had not stopped.

Numerical faults: a non-finite loss or gradient stops the run at that step, before the update, with a
`NumericalFault` that names the first op whose output was not finite (a checked replay of the step,
`Program.detect_anomaly`, with the parameters as they were before it) and the last good checkpoint. A checkpoint
is never written with non-finite parameters or optimizer state. `detect_anomaly=True` (`--detect-anomaly`)
checks every op's output on every step (a checked replay before each step: two to three times slower).
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import netdsl
from netdsl.diagnostics import Diagnostic, SpecError

from . import checkpoint as ckpt
from .augment import Augment
from .config import Config, SpecInfo, auto_values, read_spec, resolve
from .data import Batcher, Bound, Dataset, bind, input_types, open_dataset, resolve_path, split
from .evaluate import Task, correct_count, evaluate, task_of
from .metrics import MetricsLog, Progress, fmt_metrics, plot
from .schedules import Schedule


@dataclass
class Setup:
    """Everything a run (or an evaluation) needs, built from the spec, the configuration and the data."""

    net: Any
    info: SpecInfo | None
    config: Config
    dataset: Dataset
    train: Bound
    val: Bound | None
    task: Task
    augment: Augment | None


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, flush=True)


def prepare(net_or_path: Any, config_args: dict[str, Any], params: dict[str, Any], network: str | None = None,
            base: Config | None = None, tokens: list[str] | None = None, preset: dict[str, Any] | None = None,
            allow_paths: list[str] | None = None) -> Setup:
    """Read the spec's recipe, merge the configuration, open and split the data, load and bind the network.

    `preset`: network parameter values to use unless `params` sets them (a checkpoint's, for eval and sample).
    `allow_paths`: directories the spec's imports may come from besides its own tree (`--allow-path`).
    """
    info: SpecInfo | None = None
    if isinstance(net_or_path, netdsl.Net):
        if params:
            raise SpecError(Diagnostic(None, "network parameters cannot be overridden on a loaded Net",
                                       "pass the spec's path, or load it with them: netdsl.load(path, k=v)"))
        recipe = net_or_path.recipe
    else:
        info = read_spec(net_or_path, network, allow_paths)
        recipe = info.recipe
    config = resolve(recipe, base, config_args)
    if config.data is None:
        raise SpecError(Diagnostic(recipe.span if recipe else None, "no data to train on",
                                   "give --data (e.g. --data 'digits(size=32)') or a data line in the recipe"))
    spec_dir = info.path.parent if info else (Path(net_or_path.source).parent if net_or_path.source else None)
    call = resolve_path(config.data, spec_dir)
    ds = open_dataset(call, tokens)
    if isinstance(net_or_path, netdsl.Net):
        net = net_or_path
    else:
        assert info is not None
        given = {k: v for k, v in (preset or {}).items() if k in info.params}
        given.update(params)
        net = netdsl.load(info.path, network=info.network, allow_paths=allow_paths, **given,
                          **auto_values(info, ds, given))
    train_ds, val_ds = split(ds, config.val, tokens, spec_dir)
    bound = bind(train_ds, net, config.fields or None)
    vbound = bind(val_ds, net, config.fields or None) if val_ds is not None else None
    if len(bound) == 0:
        raise SpecError(Diagnostic(None, f"{ds.source}: no training examples"
                                   + (f" (text shorter than two windows of {ds.data.seq})"
                                      if hasattr(ds.data, "seq") else "")))
    if vbound is not None and len(vbound) == 0:
        vbound = None
    augment = None
    if config.augment:
        image = bound.inputs[ds.image_field] if ds.image_field is not None else None
        if image is None:
            floats = [n for n, t in input_types(net).items() if not t.is_int and t.rank == 3]
            image = floats[0] if floats else next(iter(input_types(net)))
        augment = Augment(config.augment, image, input_types(net)[image].shape)
    return Setup(net, info, config, ds, bound, vbound, task_of(net), augment)


def load_params(prog: Any, arrays: dict[str, np.ndarray]) -> None:
    for name, p in prog.params.items():
        p[...] = arrays[f"param/{name}"]


def _record(step: int, epoch: float, lr: float, train_loss: float | None, train_acc: float | None,
            val: dict[str, Any] | None, ex_s: float, elapsed: float) -> dict[str, Any]:
    r: dict[str, Any] = {"step": step, "epoch": round(epoch, 4), "lr": lr, "train_loss": train_loss}
    if train_acc is not None:
        r["train_accuracy"] = train_acc
    if val is not None:
        r["val_loss"] = val["loss"]
        if "accuracy" in val:
            r["val_accuracy"] = val["accuracy"]
        if "perplexity" in val:
            r["val_perplexity"] = val["perplexity"]
    r["examples_per_s"] = round(ex_s, 1)
    r["time"] = round(elapsed, 3)
    return r


class _Stop:
    """Ctrl-C sets a flag; the loop checkpoints at the next step boundary and stops."""

    def __init__(self) -> None:
        self.flag = False
        self.old: Any = None

    def __enter__(self) -> _Stop:  # noqa: PYI034
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.flag:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.flag = True

    def __exit__(self, *exc: object) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)


class NumericalFault(SpecError):
    """Training met a non-finite value: `step`, the first op that produced one (`anomaly`, from
    `Program.detect_anomaly`, or None) and the last good checkpoint (`checkpoint`, or None)."""

    def __init__(self, diagnostic: Diagnostic, step: int, anomaly: dict[str, Any] | None,
                 checkpoint: Path | None) -> None:
        super().__init__(diagnostic)
        self.step = step
        self.anomaly = anomaly
        self.checkpoint = checkpoint


def _not_finite(arrays: dict[str, np.ndarray]) -> list[str]:
    return [k for k, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]


def _fault(prog: Any, net: Any, what: str, step: int, epoch: int, lr: float, feeds: dict[str, Any] | None, seed: int,
           checkpoint: Path | None, params_before: list[str] | None = None) -> NumericalFault:
    """The diagnostic for a non-finite value at `step`: the first op that produced one (replaying the step with
    every op's output checked, when the batch is given), the parameters that were already non-finite, the last
    good checkpoint and the usual remedies. Positioned at the op (or at the parameter's layer)."""
    anomaly = None
    if feeds is not None:
        try:
            with np.errstate(all="ignore"):
                anomaly = prog.detect_anomaly(feeds, seed=seed, step=step)
        except Exception:  # noqa: BLE001 - the replay is a diagnosis: its failure must not hide the fault
            anomaly = None
    bad = params_before if params_before is not None else _not_finite({k: prog.params[k] for k in prog.trainable})
    span = None
    notes = []
    if anomaly is not None:
        node = next((n for n in net.ir if n.name == anomaly["node"]), None) if anomaly.get("node") else None
        span = node.span if node is not None else None
        op = f"{node.op} '{node.name}'" if node is not None else anomaly.get("kernel", "?")
        notes.append(f"the first non-finite value: the {anomaly['phase']} pass of {op} at {anomaly['where']}: "
                     f"{anomaly['source']} (kernel {anomaly['kernel']})")
    elif feeds is not None:
        notes.append("a checked replay of this step found every op's output finite (the fault may depend on "
                     "the order of floating-point operations); train with --detect-anomaly to check every step")
    if bad:
        notes.append("parameters already non-finite before this step: " + ", ".join(bad[:8])
                     + (" …" if len(bad) > 8 else ""))
        if span is None:
            spec = net.ir.params.get(bad[0])
            span = spec.span if spec is not None else None
    notes.append(f"the last good checkpoint is {checkpoint}, left as it was" if checkpoint is not None else
                 "no checkpoint was written before this step")
    where = "" if span is not None else f"{net.source}: "
    hint = (f"lower the learning rate (--lr {lr / 10:g}) or clip gradients (--clip 1.0, or `clip 1.0` in the "
            "recipe)" + (", or guard the op named above (a division by zero, the log or square root of a value ≤ 0, "
                         "an overflow)" if anomaly is not None else "")
            + ("; then continue from the checkpoint with --resume" if checkpoint is not None else ""))
    return NumericalFault(Diagnostic(span, f"{where}training stopped at step {step} (epoch {epoch + 1}, lr {lr:g}): "
                                     f"{what}", hint, notes=notes), step, anomaly, checkpoint)


def train(net_or_path: Any, data: Any = None, epochs: int | None = None, steps: int | None = None,
          batch: int | None = None, optimizer: Any = None, schedule: Any = None, lr: float | None = None,
          val: Any = None, seed: int | None = None, out: str | Path | None = None, every: int | None = None,
          resume: bool = False, init_from: str | Path | None = None, device: str = "cpu", progress: bool = True,
          network: str | None = None, clip: float | None = None, augment: Any = None,
          keep: int = 3, detect_anomaly: bool = False, allow_paths: list[str] | None = None,
          sampling: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """Train a network (a `Net` or a spec path) with its recipe, the arguments overriding its lines.

    Returns the history: one dict per evaluation (step, epoch, lr, train_loss, val_loss, val_accuracy or
    val_perplexity, examples_per_s). With `out`, writes `out/metrics.jsonl`, `out/curves.png` and checkpoints.
    A non-finite loss or gradient raises `NumericalFault` (a SpecError) naming the op that produced it;
    `detect_anomaly` checks every op's output on every step (slow).
    """
    t_start = time.perf_counter()
    args = {"data": data, "epochs": epochs, "steps": steps, "batch": batch, "optimizer": optimizer,
            "schedule": schedule, "lr": lr, "val": val, "seed": seed, "every": every, "clip": clip,
            "augment": augment, "sampling": sampling}
    outdir = Path(out) if out is not None else None
    man: dict[str, Any] | None = None
    arrays: dict[str, np.ndarray] = {}
    base = None
    if outdir is not None:
        for stale in outdir.glob(".ckpt-*.tmp"):  # a checkpoint being written when a run was killed: never used
            stale.unlink(missing_ok=True)
    if not resume and outdir is not None and ckpt.checkpoints(outdir):
        # a new run would write beside them, and keeping the newest checkpoints would delete its own
        latest = ckpt.checkpoints(outdir)[-1]
        raise SpecError(Diagnostic(None, f"{outdir}: holds the checkpoints of an earlier run (the latest is "
                                   f"{latest.name}); a new run there would mix with them",
                                   "continue it with --resume, or start the new run in another --out directory "
                                   "(or delete the old checkpoints)"))
    if resume:
        if outdir is None:
            raise SpecError(Diagnostic(None, "resume needs the run's directory (--out DIR)"))
        if not ckpt.checkpoints(outdir):
            raise SpecError(Diagnostic(None, f"{outdir}: nothing to resume: no checkpoint in this directory"))
        man, arrays, mpath = ckpt.load(outdir)
        base = Config.from_json(man["config"])
    s = prepare(net_or_path, args, params, network, base, man.get("vocab") if man else None,
                allow_paths=allow_paths)
    net, cfg = s.net, s.config
    if man is not None:
        why = ckpt.mismatch(man, net)
        if why:
            raise SpecError(Diagnostic(None, f"{mpath}: the checkpoint does not match {net.name} in {net.source}: "
                                       f"{why}", "start a new run in another --out directory, or load the "
                                       "matching parameters with --init-from"))
        if man.get("train_examples") != len(s.train):
            raise SpecError(Diagnostic(None, f"{mpath}: the training data changed: {len(s.train):,} examples now, "
                                       f"{man.get('train_examples'):,} when the checkpoint was written"))
    batcher = Batcher(s.train, cfg.batch, cfg.seed, True, s.augment, sampling=cfg.sampling)
    vbatcher = Batcher(s.val, cfg.batch, cfg.seed, False, s.augment) if s.val is not None else None
    spe = batcher.steps_per_epoch
    total = cfg.steps if cfg.steps is not None else (cfg.epochs or 1) * spe
    every_n = cfg.every or (spe if total >= spe else max(1, math.ceil(total / 10)))
    from .optim import Optimizer  # Numba: imported only when training

    prog = netdsl.compile(net, batch=cfg.batch, device=device, seed=cfg.seed)  # BLAS on one thread (lanes)
    if hasattr(prog, "precompile"):  # the CPU program: a cold kernel cache is filled on every core
        prog.precompile()
    opt = Optimizer(cfg.optimizer, prog.params, prog.trainable)
    sched = Schedule(cfg.schedule, opt.lr, total)
    history: list[dict[str, Any]] = []
    start = 0
    last_good: list[Path | None] = [mpath if man is not None else None]  # the last checkpoint written or resumed
    if man is not None:
        load_params(prog, arrays)
        opt.load_state({k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}, man["optimizer_steps"])
        sched.load_state(man.get("schedule_state", {}))
        history = [h for h in man.get("history", []) if h["step"] <= man["step"]]
        start = int(man["step"])
    elif init_from is not None:
        _init_from(prog, init_from, progress)

    n_params = sum(prog.params[n].size for n in prog.trainable)
    where = f" ({net.source})" if not isinstance(net_or_path, netdsl.Net) or net.source else ""
    _say(progress, f"netdsl train: {net.name}{where}, {n_params:,} trainable parameters")
    fields = ", ".join(n if n is not None else "_" for n in s.train.inputs)
    _say(progress, f"  data {s.dataset.name}: {len(s.train):,} training"
         + (f" / {len(s.val):,} validation" if s.val is not None else ", no validation")
         + f" {'windows' if s.dataset.name.startswith('text') else 'examples'} → ({fields})")
    span = (f"{cfg.steps:,} steps" if cfg.steps is not None
            else f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''} = {total:,} steps")
    _say(progress, f"  {opt.describe()}, schedule {sched.describe()}, batch {cfg.batch}, {span}, seed {cfg.seed}"
         + (f", clip {cfg.clip:g}" if cfg.clip else "") + (f", augment {s.augment.text}" if s.augment else "")
         + (", batches drawn at random" if cfg.sampling == "random" else ""))
    if cfg.defaulted:
        _say(progress, "  defaults (no recipe line or flag for them): " + ", ".join(cfg.defaulted))
    if outdir is not None:
        _say(progress, f"  {'resuming from ' + str(mpath) + ' at step ' + str(start) if man else 'writing to ' + str(outdir)}")
    if start >= total:
        last = history[-1] if history else {}
        _say(True, f"nothing to do: the run in {outdir} is at step {start} of {total} "
             f"(train longer with --epochs or --steps); last: {fmt_metrics(last)}")
        return history

    log = MetricsLog(outdir, start if man is not None else None)
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        if s.dataset.tokens is not None:
            kind = "chars" if s.dataset.name.startswith("text") else "words"
            vocab = json.dumps({"kind": kind, "tokens": s.dataset.tokens}).encode("utf-8")
            ckpt.write_atomic(outdir / "vocab.json", lambda f: f.write(vocab))  # whole or absent, as checkpoints

    def save(step: int) -> None:
        if outdir is None:
            return
        bad = _not_finite(prog.params) + [f"optimizer state {k}" for k in _not_finite(opt.state)]
        if bad:  # never a checkpoint that cannot be trained on: the last good one stays the latest
            raise _fault(prog, net, "the update of the previous step made values non-finite: " + ", ".join(bad[:6]),
                         step, (step - 1) // spe, sched.lr(step - 1, (step - 1) // spe), None, cfg.seed,
                         last_good[0], params_before=[b for b in bad if not b.startswith("optimizer")])
        arrs = {f"param/{k}": v for k, v in prog.params.items()}
        arrs.update({f"opt/{k}": v for k, v in opt.state.items()})
        epoch_rng = np.random.default_rng([cfg.seed, 1, step // spe]).bit_generator.state
        manifest = {
            "spec_hash": net.spec_hash, "spec_file": str(net.source), "spec_text": net.text, "network": net.name,
            "values": ckpt.encode_values(net.values), "param_shapes": ckpt.shapes(prog.params),
            "epoch": step // spe, "position": (step % spe) * cfg.batch, "steps_per_epoch": spe,
            "train_examples": len(s.train), "total_steps": total,
            "rng": {"seed": cfg.seed, "epoch_order": "numpy PCG64 from SeedSequence([seed, 1, epoch])",
                    "augment": "numpy PCG64 from SeedSequence([seed, 2, step])",
                    "dropout": "a function of (seed, step, node)", "epoch_state": epoch_rng},
            "config": cfg.to_json(), "optimizer": opt.describe(), "optimizer_steps": opt.t,
            "schedule_state": sched.state(), "history": history, "vocab": s.dataset.tokens,
            "netdsl_version": netdsl.__version__,
        }
        last_good[0] = ckpt.save(outdir, step, arrs, manifest, keep=keep)

    bar = Progress(total, start, progress)
    t_interval = time.perf_counter()
    train_time = 0.0
    ex_interval = 0
    loss_sum, loss_n, correct, counted = 0.0, 0, 0, 0
    step = start
    stopped = False
    last_plot = time.perf_counter()
    try:
        with _Stop() as stop:
            while step < total:
                if stop.flag:
                    stopped = True
                    break
                epoch, pos = divmod(step, spe)
                t0 = time.perf_counter()
                feeds = batcher.get(epoch, pos, step)
                n = len(next(iter(feeds.values())))
                lr_now = sched.lr(step, epoch)
                if detect_anomaly:  # every op's output checked before the step runs
                    before = _not_finite({k: prog.params[k] for k in prog.trainable})
                    with np.errstate(all="ignore"):
                        found = prog.detect_anomaly(feeds, seed=cfg.seed, step=step)
                    if found is not None:
                        raise _fault(prog, net, "an op produced a non-finite value (--detect-anomaly)", step, epoch,
                                     lr_now, feeds, cfg.seed, last_good[0], params_before=before)
                with np.errstate(all="ignore"):  # non-finite values are caught below, by name
                    loss, outs = prog.step_grads(feeds, seed=cfg.seed, step=step, outputs=True)
                # parameters as they were before this step's update: the check comes before opt.step
                what = None
                if not math.isfinite(loss):
                    what = f"the training loss became {loss}"
                elif not math.isfinite(opt.grad_norm(prog.grads)):
                    names = _not_finite({k: prog.grads[k] for k in prog.trainable})
                    what = "the gradient became non-finite" + (f" ({', '.join(names[:6])})" if names else "")
                if what is not None:
                    raise _fault(prog, net, what, step, epoch, lr_now, feeds, cfg.seed, last_good[0])
                if s.task.has_accuracy and s.task.output in outs and s.task.label in feeds:
                    c, k = correct_count(outs[s.task.output], feeds[s.task.label], s.task.ignore)
                    correct += c
                    counted += k
                opt.step(prog.grads, lr_now, cfg.clip)
                step += 1
                loss_sum += loss * n
                loss_n += n
                ex_interval += n
                dt = time.perf_counter() - t0
                train_time += dt
                bar.update(loss, ex_interval / max(time.perf_counter() - t_interval, 1e-9), epoch)
                if step % every_n == 0 or step == total:
                    ex_s = ex_interval / max(time.perf_counter() - t_interval, 1e-9)
                    with np.errstate(all="ignore"):  # a diverging model's validation loss may be inf: reported
                        vm = evaluate(prog, vbatcher.eval_batches(), s.task) if vbatcher is not None else None
                    rec = _record(step, step / spe, lr_now, loss_sum / max(loss_n, 1),
                                  correct / counted if counted else None, vm, ex_s, time.perf_counter() - t_start)
                    history.append(rec)
                    log.append(rec)
                    if vm is not None:
                        sched.observe(vm["loss"])
                    if progress:
                        bar.write(f"  step {step:,} (epoch {step / spe:.2f}): lr {lr_now:.3g}, {fmt_metrics(rec)}, "
                                  f"{ex_s:,.0f} examples/s")
                    save(step)
                    if outdir is not None and (step == total or time.perf_counter() - last_plot > 15):
                        note = plot(history, outdir / "curves.png")
                        last_plot = time.perf_counter()
                        if note and step == total and progress:
                            bar.write(note)
                    loss_sum, loss_n, correct, counted, ex_interval = 0.0, 0, 0, 0, 0
                    t_interval = time.perf_counter()
    finally:
        bar.close()
    elapsed = time.perf_counter() - t_start
    if stopped:
        save(step)
        if outdir is not None:
            plot(history, outdir / "curves.png")
        raise KeyboardInterrupt(f"stopped at step {step}" + (f"; checkpoint in {outdir}, continue with --resume"
                                                                 if outdir is not None else ""))
    last = history[-1] if history else {}
    size = f" ({len(s.val):,} validation examples)" if s.val is not None else " (no validation set)"
    epochs_done = f"{step / spe:.4g} epoch" + ("" if step == spe else "s")
    print(f"done: {net.name}, {epochs_done}, {step:,} steps in {elapsed:.1f} s: {fmt_metrics(last)}{size}", flush=True)
    return history


def _init_from(prog: Any, where: str | Path, progress: bool) -> None:
    """Copy the parameters whose names and shapes match from a checkpoint (fine-tuning; no optimizer state)."""
    _, arrays, path = ckpt.load(where)
    loaded, skipped = [], []
    for name, p in prog.params.items():
        a = arrays.get(f"param/{name}")
        if a is not None and a.shape == p.shape:
            p[...] = a
            loaded.append(name)
        else:
            skipped.append(name)
    if not loaded:
        raise SpecError(Diagnostic(None, f"{path}: no parameter of the checkpoint fits this network "
                                   "(no matching names and shapes)"))
    _say(progress, f"  initialised {len(loaded)} of {len(prog.params)} parameter tensors from {path}"
         + (f"; kept the fresh ones for: {', '.join(skipped[:8])}" if skipped else ""))
