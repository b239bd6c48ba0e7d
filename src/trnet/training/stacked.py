"""Several runs of one system as one stacked model (docs/design.md
§7.1): the weights of R runs are rows of one tensor, and `torch.func.vmap` over
`functional_call` runs all of them in one pass, each on its own batch. A convolution of R runs
becomes one grouped convolution, and every other operation one call instead of R, which is
what makes the tiny models of a grid cheaper per run.

Each run keeps everything that makes it itself: its own initial weights, batches,
BatchNorm statistics (buffers are stacked too) and Adam moments and step count. The Adam
update here is torch.optim.Adam's (single-tensor form, default hyper-parameters) applied to
the rows of the runs that took a step, so a run that has no batch at this step (its epoch
is shorter) or has stopped is not touched, its moments included. With weight decay the update is torch.optim.AdamW's
(decoupled: the rows shrink by lr x weight_decay first). `StackedAdam.store` gives a run's model
and optimizer back as the single-run trainer holds them, so its checkpoints are written by the
same functions (`trnet.runs.save_weights`, `save_training_state`).

The training levers of docs/design.md §7 ("Training levers") act per run here as in the single
trainer: label smoothing in each run's loss, a weight average (EMA) of each run's rows
(`StackedAverage`, the same element-wise update as `training.averaging.WeightAverage`), and
the encoder's input normalisation inside the model (`SERSystem.embed`; the teachers, stacked as
bare encoders, apply it here)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from trnet.models import SERSystem, SystemConfig
from trnet.models.losses import compute_losses
from trnet.models.masking import MaskedBatchNorm
from trnet.models.system import utterance_mean_norm
from trnet.training.averaging import WeightAverage

LOSS_KEYS = ("total", "ce", "low", "high", "coef")
BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which the single-run trainer uses


def has_dropout(model: nn.Module) -> bool:
    """Dropout draws from the global RNG, which vmap would draw differently than a run alone."""
    return any(isinstance(m, nn.Dropout) for m in model.modules())


class Stack:
    """R models of one architecture as stacked tensors: `flat` [R, P] holds every parameter
    of every run (one leaf, so one gradient and one Adam update for all), `buffers` the
    stacked buffers (BatchNorm statistics, SNR-aware input statistics)."""

    def __init__(self, models: Sequence[nn.Module], device: torch.device | str = "cpu"):
        first = models[0]
        self.base = copy.deepcopy(first).to("meta")  # the architecture only; tensors come from the stack
        for module in self.base.modules():  # eval-mode BatchNorm in plain tensor ops (vmap on CUDA)
            if isinstance(module, MaskedBatchNorm):
                module.functional = True
        self.names = [n for n, _ in first.named_parameters()]
        self.shapes = [p.shape for p in first.parameters()]
        self.numels = [p.numel() for p in first.parameters()]
        with torch.no_grad():
            self.flat = torch.stack([torch.cat([p.reshape(-1) for p in m.parameters()]) for m in models]).to(device)
        self.flat.requires_grad_(True)
        self.buffers = {
            n: torch.stack([dict(m.named_buffers())[n] for m in models]).to(device) for n, _ in first.named_buffers()
        }
        self.size = len(models)

    def params(self, flat: Tensor) -> dict[str, Tensor]:
        """Views of `flat` [R', P] as the named parameters, [R', *shape] each."""
        pieces = flat.split(self.numels, dim=1)
        return {n: t.view(flat.shape[0], *s) for n, t, s in zip(self.names, pieces, self.shapes, strict=False)}

    def state_dict(self, r: int, flat: Tensor | None = None, buffers: dict[str, Tensor] | None = None) -> dict:
        """Run r's weights and buffers under the single model's names (of `flat` and `buffers`
        when given: a weight average's)."""
        out = {n: t.detach()[r] for n, t in self.params(self.flat if flat is None else flat).items()}
        out.update({n: b[r] for n, b in (self.buffers if buffers is None else buffers).items()})
        return out


class StackedAverage:
    """`WeightAverage` of every run of a Stack: after a run's step, its rows of the average
    become decay x average + (1 - decay) x live, floating-point buffers too, integer buffers
    copied (the same element-wise operations, so each run's average is its alone)."""

    def __init__(self, stack: Stack, decay: float):
        self.stack, self.decay = stack, decay
        self.flat = stack.flat.detach().clone()
        self.buffers = {n: b.clone() for n, b in stack.buffers.items()}

    def load(self, r: int, average: WeightAverage) -> None:
        """Take run r's average from a single-run WeightAverage (e.g. a resumed run's)."""
        state = average.state_dict()
        with torch.no_grad():
            for n, t in self.stack.params(self.flat).items():
                t[r].copy_(state[n])
            for n, b in self.buffers.items():
                b[r].copy_(state[n])

    def state_dict(self, r: int) -> dict[str, Tensor]:
        return self.stack.state_dict(r, self.flat, self.buffers)

    @torch.no_grad()
    def update(self, rows: Tensor | None) -> None:
        """After the step of the runs `rows` (None: all)."""
        pairs = [(self.flat, self.stack.flat.detach())] + [(b, self.stack.buffers[n]) for n, b in self.buffers.items()]
        for avg, live in pairs:
            if not avg.dtype.is_floating_point:
                mixed = _rows(live, rows)
            else:
                mixed = _rows(avg, rows).mul_(self.decay).add_(_rows(live, rows), alpha=1 - self.decay)
            if rows is None:
                avg.copy_(mixed)
            else:
                avg.index_copy_(0, rows, mixed)


class StackedAdam:
    """torch.optim.Adam (lr from the run's training config, default betas and eps), or AdamW
    with `weight_decay` > 0, on the rows of a Stack, with a step count per run."""

    def __init__(self, stack: Stack, lr: float, weight_decay: float = 0.0):
        self.stack, self.lr, self.weight_decay = stack, lr, weight_decay
        self.exp_avg = torch.zeros_like(stack.flat, requires_grad=False)
        self.exp_avg_sq = torch.zeros_like(self.exp_avg)
        self.steps = [0] * stack.size

    def load(self, r: int, optimizer: torch.optim.Optimizer) -> None:
        """Take run r's moments and step count from a single-run Adam (e.g. a resumed run's)."""
        m, v = self.stack.params(self.exp_avg), self.stack.params(self.exp_avg_sq)
        for name, p in zip(self.stack.names, optimizer.param_groups[0]["params"], strict=False):
            state = optimizer.state.get(p)
            if state:
                m[name][r].copy_(state["exp_avg"])
                v[name][r].copy_(state["exp_avg_sq"])
                self.steps[r] = int(state["step"])

    def store(self, r: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Write run r's weights into `model` and its moments into `optimizer` (for a checkpoint)."""
        model.load_state_dict(self.stack.state_dict(r))
        m, v = self.stack.params(self.exp_avg), self.stack.params(self.exp_avg_sq)
        if self.steps[r] == 0:
            return
        for name, p in zip(self.stack.names, optimizer.param_groups[0]["params"], strict=False):
            optimizer.state[p] = {
                "step": torch.tensor(float(self.steps[r])),
                "exp_avg": m[name][r].clone(),
                "exp_avg_sq": v[name][r].clone(),
            }

    @torch.no_grad()
    def step(self, rows: list[int], lrs: list[float] | None = None) -> None:
        """One update of the runs in `rows` (their gradient rows), as torch's _single_tensor_adam
        (decoupled weight decay first, as AdamW), each at its learning rate (`lrs`, the run's
        schedule at its step; default: `lr`)."""
        flat, grad = self.stack.flat, self.stack.flat.grad
        b1, b2 = BETAS
        for r in rows:
            self.steps[r] += 1
        bc1 = torch.tensor([1 - b1 ** self.steps[r] for r in rows], dtype=torch.float64)
        bc2 = torch.tensor([1 - b2 ** self.steps[r] for r in rows], dtype=torch.float64)
        lr = torch.tensor(lrs if lrs is not None else [self.lr] * len(rows), dtype=torch.float64)
        step_size = (lr / bc1).to(flat)[:, None]
        bc2_sqrt = bc2.sqrt().to(flat)[:, None]
        everyone = rows == list(range(self.stack.size))
        idx = None if everyone else torch.tensor(rows, device=flat.device)
        g = grad if everyone else grad[idx]
        m = self.exp_avg if everyone else self.exp_avg[idx]
        v = self.exp_avg_sq if everyone else self.exp_avg_sq[idx]
        if self.weight_decay:
            shrink = (1 - lr * self.weight_decay).to(flat)[:, None]
            if everyone:
                flat.mul_(shrink)
            else:
                flat.index_copy_(0, idx, flat[idx] * shrink)
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        update = step_size * (m / (v.sqrt() / bc2_sqrt).add_(EPS))
        if everyone:
            flat.sub_(update)
        else:
            flat.index_copy_(0, idx, flat[idx] - update)
            self.exp_avg.index_copy_(0, idx, m)
            self.exp_avg_sq.index_copy_(0, idx, v)


def _rows(t: Tensor, rows: Tensor | None) -> Tensor:
    return t if rows is None else t[rows]


class StackedSystem:
    """The training step and evaluation forward of R runs of one SystemConfig, with an optional
    stacked frozen teacher per run (its Baseline-c), the training levers of docs/design.md §7
    that act inside a step (`label_smoothing`, `weight_decay`, `ema_decay`) and, for the fast
    path of docs/design.md §7.1 (`training.fast`), bf16 autocast (`autocast`: the device type)
    and a compiled step (`compile_mode`)."""

    def __init__(
        self,
        cfg: SystemConfig,
        models: Sequence[SERSystem],
        teachers: Sequence[nn.Module] | None,
        lr: float,
        device: torch.device | str = "cpu",
        *,
        weight_decay: float = 0.0,
        label_smoothing: float = 0.0,
        ema_decay: float = 0.0,
        autocast: bool = False,
        compile_mode: str | None = None,
    ):
        self.cfg, self.device = cfg, torch.device(device)
        self.stack = Stack(models, device)
        self.adam = StackedAdam(self.stack, lr, weight_decay)
        self.average = StackedAverage(self.stack, ema_decay) if ema_decay else None
        self.label_smoothing, self.autocast, self.compile_mode = label_smoothing, autocast, compile_mode
        self._compiled: dict[bool, object] = {}
        self.teacher = Stack([t.encoder for t in teachers], device) if teachers else None
        if self.teacher is not None:
            self.teacher.base.eval()  # frozen: BatchNorm uses its running statistics
            self.teacher.flat.requires_grad_(False)

    def _amp(self):
        """bf16 autocast on the fast path (master weights, moments and losses stay float32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def teacher_h(self, rows: list[int], xs: Tensor, frames: Tensor) -> Tensor:
        """The frozen teachers' h_s [R', B, D] of clean LMFB xs [R', B, T, F]."""
        return self._teacher_h(xs, frames, self._index(rows))

    def _index(self, rows: list[int]) -> Tensor | None:
        return None if rows == list(range(self.stack.size)) else torch.tensor(rows, device=self.device)

    def _teacher_h(self, xs: Tensor, frames: Tensor, rows: Tensor | None) -> Tensor:
        t = self.teacher
        params = t.params(_rows(t.flat.detach(), rows))
        buffers = {n: _rows(b, rows) for n, b in t.buffers.items()}
        norm = self.cfg.input_norm == "utterance"  # SERSystem.embed's, which the bare encoder skips

        def embed(p, b, x, f):
            return functional_call(t.base, (p, b), (utterance_mean_norm(x, f) if norm else x, f))

        with torch.no_grad(), self._amp():
            return vmap(embed)(params, buffers, xs, frames).float()

    def _losses_fn(self, with_h: bool):
        """vmap of one run's losses over the stack (compiled once per signature on the fast path)."""
        if with_h in self._compiled:
            return self._compiled[with_h]
        s, cfg, smoothing = self.stack, self.cfg, self.label_smoothing

        def loss(p, b, x_, xe_, xs_, f, y_, snr, h):
            out = functional_call(s.base, (p, b), (x_, xe_, f))
            if self.autocast:  # the losses in float32, as autocast does for cross-entropy
                out = type(out)(*(None if v is None else v.float() for v in out))
            losses = compute_losses(out, y_, xs_, f, h, cfg, x=x_, xe=xe_, snr_db=snr, label_smoothing=smoothing)
            return torch.stack([losses[k] for k in LOSS_KEYS])

        fn = vmap(loss, in_dims=(0, 0, 0, 0, 0, 0, 0, 0, 0 if with_h else None))
        if self.compile_mode:
            fn = torch.compile(fn, mode=self.compile_mode, dynamic=True)
        self._compiled[with_h] = fn
        return fn

    def train_step(
        self,
        rows: list[int],
        x: Tensor,
        xe: Tensor,
        xs: Tensor,
        frames: Tensor,
        y: Tensor,
        snr_db: Tensor,
        h_s: Tensor | None = None,
        lrs: list[float] | None = None,
        check_finite: bool = True,
    ) -> Tensor:
        """One optimiser step of the runs `rows` on their batches (stacked [R', B, ...]); returns
        their losses [R', 5] (LOSS_KEYS), detached, on the device. The teachers' h_s is computed
        here unless given. With `check_finite`, raises FloatingPointError (with the offending
        positions in `rows`) before any update when a loss is not finite; without it (the fast
        path: no host synchronisation) the caller checks the returned losses later, and a
        non-finite loss makes that run's weights non-finite, never the other runs'."""
        s, cfg = self.stack, self.cfg
        idx = self._index(rows)
        s.base.train()
        if h_s is None and self.teacher is not None and cfg.beta:
            h_s = self._teacher_h(xs, frames, idx)
        buffers = {n: _rows(b, idx) for n, b in s.buffers.items()}  # updated in place by BatchNorm
        with self._amp():
            losses = self._losses_fn(h_s is not None)(
                s.params(_rows(s.flat, idx)), buffers, x, xe, xs, frames, y, snr_db, h_s
            )
        if check_finite:
            bad = [rows[i] for i in torch.nonzero(~torch.isfinite(losses[:, 0].detach())).flatten().tolist()]
            if bad:
                raise FloatingPointError(bad)
        s.flat.grad = None
        losses[:, 0].sum().backward()  # runs share no weights: each row gets its own run's gradient
        if idx is not None:
            with torch.no_grad():
                for n, b in s.buffers.items():
                    b.index_copy_(0, idx, buffers[n])
        self.adam.step(rows, lrs)
        if self.average is not None:
            self.average.update(idx)
        return losses.detach()

    @torch.no_grad()
    def predict(
        self, rows: list[int], x: Tensor, xe: Tensor, frames: Tensor, average: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Eval-mode logits [R', B, classes] (float32) and c [R', B] (None without an SNR-aware
        module), of the live weights or, with `average`, of the weight average."""
        s = self.stack
        idx = self._index(rows)
        s.base.eval()
        flat, bufs = (self.average.flat, self.average.buffers) if average else (s.flat.detach(), s.buffers)
        params = s.params(_rows(flat, idx))
        buffers = {n: _rows(b, idx) for n, b in bufs.items()}

        def fwd(p, b, x_, xe_, f):
            out = functional_call(s.base, (p, b), (x_, xe_, f))
            return out.logits, (out.c if out.c is not None else out.logits[:, 0])

        with self._amp():
            logits, c = vmap(fwd)(params, buffers, x, xe, frames)
        return logits.float(), (c.float() if self.cfg.input == "trnet" else None)
