"""The one model class (paper Figure 1, §4.4). The seven compared systems are configurations of
it (docs/design.md §6), read from src/trnet/configs/<name>.toml:

    input "x"      encoder(X)                                        Baseline-c, Baseline-n
    input "xe"     encoder(X_e)                                      Baseline-e
    input "ne"     shared encoder on X and X_e, h_x and h_e fused    Baseline-ne
    input "trnet"  SNR-aware -> X~ -> encoder -> bridge -> h~        TRNet and its two variants

The frozen teacher (a Baseline-c system, §3.3) is never a submodule of the student: it is
built apart with `build_teacher` and only the training loop calls it (h_s = teacher.embed(X_s)),
so the student's state_dict and inference graph have no teacher in them."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from trnet import configs
from trnet.configs import ConfigError
from trnet.models.bridge import FiLMBridge
from trnet.models.encoder import ENCODERS
from trnet.models.masking import valid_mask
from trnet.models.snr_aware import C_TARGETS, SNR_INITS, SNR_INPUTS, SNRAware
from trnet.utils import safe_component

# beyond Table 1: options of the SNR-aware module (docs/design.md §6.2)
SNR_OPTIONS = ("snr_input", "snr_init", "gamma", "c_target")  # SystemConfig fields of the SNR-aware module
INPUTS = ("x", "xe", "ne", "trnet")
INPUT_NORMS = ("none", "utterance")


@dataclass(frozen=True)
class SystemConfig:
    name: str
    input: str  # one of INPUTS
    train_conditions: str  # "clean" (IEM) or "noisy" (IEM + IEM-ESC)
    alpha: float  # weight of L_low, eq. (8)
    beta: float  # weight of L_high, eq. (8)
    bridge: bool  # FiLM bridge, eq. (6)
    teacher: bool  # frozen Baseline-c teacher gives h_s
    encoder: str = "resnet"  # "resnet" (the paper's text) or "cnn6" (the authors' code)
    width: int = 32  # channels of the first block; h has 8 * width dimensions
    n_classes: int = 4
    n_mels: int = 80
    # SNR-aware module options (docs/design.md §6.2; the defaults are the paper's, see models/snr_aware.py)
    snr_input: str = "lmfb"  # what eq. (1) compares: "lmfb" | "lmfb-std" | "mel-power"
    snr_init: str = "project"  # FC init: "project" (weights 0, bias 0.5) | "pytorch" (nn.Linear default)
    gamma: float = 0.0  # weight of L_c = mean (c - c*)^2 (beyond the paper; models/losses.py)
    c_target: str = "oracle"  # c* of L_c: "oracle" (least-squares c of eq. (5)) | "snr" (known SNR / 25 dB, clean 1)
    # beyond the paper: the encoder's input less its own per-mel-bin mean over the utterance's valid
    # frames (docs/design.md §7, "Training levers"): "none" (the paper's) | "utterance"
    input_norm: str = "none"

    def __post_init__(self) -> None:
        safe_component(self.name, "system name")  # it names the run's folder RUNS/<system>/
        checks = {
            f"input {self.input!r} is not one of {INPUTS}": self.input not in INPUTS,
            f"train_conditions {self.train_conditions!r} is not 'clean' or 'noisy'": self.train_conditions
            not in ("clean", "noisy"),
            f"encoder {self.encoder!r} is not one of {tuple(ENCODERS)}": self.encoder not in ENCODERS,
            f"width must be from 1 to {MAX_WIDTH}": not 1 <= self.width <= MAX_WIDTH,
            "alpha and beta must be finite numbers >= 0": not (0 <= self.alpha < float("inf"))
            or not (0 <= self.beta < float("inf")),
            "alpha > 0 (L_low) needs input 'trnet' (X~)": self.alpha > 0 and self.input != "trnet",
            "bridge needs input 'trnet' (c)": self.bridge and self.input != "trnet",
            "teacher must be true exactly when beta > 0 (L_high needs h_s)": self.teacher != (self.beta > 0),
            f"snr_input {self.snr_input!r} is not one of {SNR_INPUTS}": self.snr_input not in SNR_INPUTS,
            f"snr_init {self.snr_init!r} is not one of {SNR_INITS}": self.snr_init not in SNR_INITS,
            "gamma must be a finite number >= 0": not (0 <= self.gamma < float("inf")),
            f"c_target {self.c_target!r} is not one of {C_TARGETS}": self.c_target not in C_TARGETS,
            f"input_norm {self.input_norm!r} is not one of {INPUT_NORMS}": self.input_norm not in INPUT_NORMS,
            "snr_input, snr_init, gamma and c_target are options of the SNR-aware module: they need input 'trnet'": (
                self.input != "trnet"
                and any(getattr(self, f.name) != f.default for f in fields(self) if f.name in SNR_OPTIONS)
            ),
        }
        problems = [message for message, failed in checks.items() if failed]
        if problems:
            raise ConfigError(f"system {self.name!r}: " + "; ".join(problems))


LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainingConfig:
    """Training settings (docs/design.md §7). The defaults are the paper's, and this class is their one
    home: a system's TOML may override them in a [training] table (the built-in ones don't)."""

    epochs: int = 80
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 10  # early stopping: epochs without a better validation UAR
    lr_schedule: str = "constant"  # "constant" (the paper's) | "cosine" (to 0 over the run; docs/design.md §7)
    bucket: bool = False  # batches of similar length (trnet.batches.train_batches); the paper's are random
    # Levers against memorising few training speakers (docs/design.md §7, "Training levers"): each is
    # off by default, so a run without them trains bit for bit as before they existed.
    warmup_epochs: float = 0.0  # linear warm-up of the learning rate over this many epochs, then the schedule
    weight_decay: float = 0.0  # decoupled weight decay (AdamW); 0: Adam, the paper's optimiser
    label_smoothing: float = 0.0  # of the cross-entropy L_task
    freq_masks: int = 0  # SpecAugment: frequency masks per training example, each up to freq_mask_bins wide
    freq_mask_bins: int = 10
    time_masks: int = 0  # SpecAugment: time masks per example, each up to time_mask_frames long
    time_mask_frames: int = 20
    crop_s: float = 0.0  # random crop of each training example to at most this many seconds; 0: whole
    ema_decay: float = 0.0  # exponential moving average of the weights, validated and kept; 0: none
    ema_warmup: bool = False  # the average's decay ramps up, min(ema_decay, (1 + t) / (10 + t)) at update t
    teacher_cache: bool = False  # the frozen teacher's h_s computed once per utterance, on the whole clean input

    def __post_init__(self) -> None:
        """Every setting checked when the config is made, so a bad one is refused before a run
        directory is written (docs/design.md §9.4)."""
        problems = [
            f"{name} must be an integer >= 1, got {getattr(self, name)!r}"
            for name in ("epochs", "batch_size", "patience")
            if not isinstance(getattr(self, name), int)
            or isinstance(getattr(self, name), bool)
            or getattr(self, name) < 1
        ]
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < float("inf"):
            problems.append(f"lr must be a finite number > 0, got {lr!r}")
        if not isinstance(self.bucket, bool):
            problems.append(f"bucket must be true or false, got {self.bucket!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        problems += _lever_problems(self)
        if problems:
            raise ValueError("training settings: " + "; ".join(problems))

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of optimiser step `step` (0-based over the whole run): constant, or
        cosine from `lr` to 0 over epochs x steps_per_epoch steps (a function of the step alone,
        so a resumed run follows the same schedule)."""
        warmup = round(self.warmup_epochs * steps_per_epoch)
        if warmup > 0 and step < warmup:  # linear from lr / warmup to lr
            return float(self.lr) * (step + 1) / warmup
        if self.lr_schedule == "constant":
            return float(self.lr)
        if warmup > 0:  # the cosine runs over the steps after the warm-up
            total = max(1, self.epochs * steps_per_epoch - warmup)
            return float(self.lr) * 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, total) / total))
        total = max(1, self.epochs * steps_per_epoch)
        return float(self.lr) * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

    def levers(self) -> dict[str, object]:
        """The training levers set away from their defaults (docs/design.md §7): what a runs
        folder's tag and a pilot's setting name show."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name in LEVERS and getattr(self, f.name) != f.default
        }

    def tag(self) -> str:
        """A runs-folder suffix naming every lever that is on ('' when none is: the folders of
        earlier runs keep their names)."""
        return "".join(f"-{LEVER_TAGS[k]}" + ("" if v is True else f"{v:g}") for k, v in self.levers().items())


# the training levers and the short names a runs-folder tag gives them (TrainingConfig.tag)
LEVER_TAGS = {
    "warmup_epochs": "wu",
    "weight_decay": "wd",
    "label_smoothing": "ls",
    "freq_masks": "fm",
    "freq_mask_bins": "fb",
    "time_masks": "tm",
    "time_mask_frames": "tf",
    "crop_s": "crop",
    "ema_decay": "ema",
    "ema_warmup": "emawu",
    "teacher_cache": "tc",
}
LEVERS = tuple(LEVER_TAGS)


def _lever_problems(t: TrainingConfig) -> list[str]:
    """The levers' ranges; NaN and infinities fail every comparison below, so they are refused."""

    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    def integer(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    checks = {
        "warmup_epochs must be a number in [0, epochs]": not (
            number(t.warmup_epochs) and 0 <= t.warmup_epochs <= max(t.epochs, 0)
        ),
        "weight_decay must be a number in [0, 1)": not (number(t.weight_decay) and 0 <= t.weight_decay < 1),
        "label_smoothing must be a number in [0, 1)": not (number(t.label_smoothing) and 0 <= t.label_smoothing < 1),
        "freq_masks and time_masks must be integers >= 0": not (
            integer(t.freq_masks) and integer(t.time_masks) and t.freq_masks >= 0 and t.time_masks >= 0
        ),
        "freq_mask_bins and time_mask_frames must be integers >= 1": not (
            integer(t.freq_mask_bins)
            and integer(t.time_mask_frames)
            and t.freq_mask_bins >= 1
            and t.time_mask_frames >= 1
        ),
        "crop_s must be 0 (no crop) or a number of seconds in [0.5, 60]": not (
            number(t.crop_s) and (t.crop_s == 0 or 0.5 <= t.crop_s <= 60)
        ),
        "ema_decay must be 0 (none) or a number in (0, 1)": not (number(t.ema_decay) and 0 <= t.ema_decay < 1),
        "teacher_cache must be true or false": not isinstance(t.teacher_cache, bool),
        "ema_warmup must be true or false, and needs ema_decay > 0": not isinstance(t.ema_warmup, bool)
        or (t.ema_warmup and not t.ema_decay),
    }
    return [
        f"{message}, got {', '.join(f'{k}={getattr(t, k)!r}' for k in LEVERS if k in message)}"
        for message, failed in checks.items()
        if failed
    ]


# the TrainingConfig fields a recipe (`trnet reproduce`'s or `trnet bundle`'s) sets as top-level keys;
# TrainingConfig checks them, and `trnet.training.trainer.recipe_run_spec` passes them to every run
RECIPE_TRAINING = ("epochs", "batch_size", "patience", "lr_schedule", "bucket")
PAPER_TRAINING = TrainingConfig()  # docs/design.md §7: the defaults are the paper's (80 epochs, batch 32)
MAX_WIDTH = 256  # 8x the paper's: h of 2048 dimensions; more would only exhaust memory (1e5: 1 TB)
PAPER_WIDTH = SystemConfig.width  # 32: filters 32..256 (docs/design.md §5)


def _read_toml(name_or_path: str | Path) -> tuple[str, dict]:
    """A system's name and table, by name (the registry, `trnet.configs`; an alias resolves
    to its system) or by the path of a .toml file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = configs.find(str(name_or_path))
    elif not path.is_file():
        raise ConfigError(f"{path}: no such system config")
    table = configs.read_toml(path)
    table.pop("about", None)  # what the registry reads: names, families, order (trnet.configs)
    return path.stem, table


def load_config(name_or_path: str | Path) -> SystemConfig:
    """A system config by name (`trnet.configs.names()`, or an alias) or .toml path; its name
    is the file's stem."""
    name, table = _read_toml(name_or_path)
    table.pop("training", None)
    try:
        return SystemConfig(name=name, **table)
    except TypeError as e:  # unknown or missing keys
        raise ConfigError(f"{name_or_path}: {e}") from None


def load_training_config(name_or_path: str | Path) -> TrainingConfig:
    """The [training] table of a system config (defaults where absent)."""
    _, table = _read_toml(name_or_path)
    try:
        return TrainingConfig(**table.get("training", {}))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name_or_path} [training]: {e}") from None


def training_order(systems: tuple[str, ...] | list[str]) -> list[str]:
    """The teacher first (Baseline-c, `configs.teacher()`), added if a system needs it and it is
    not listed: the trainer would train it anyway, and listing it first makes its progress line
    and wall time visible, and its checkpoint ready before a TRNet run asks for it."""
    teacher = configs.teacher()
    order = [s for s in systems if s == teacher] + [s for s in systems if s != teacher]
    if teacher not in order and any(load_config(s).teacher for s in systems):
        order.insert(0, teacher)
    return order


def teacher_config(cfg: SystemConfig) -> SystemConfig:
    """The teacher of a system: Baseline-c (`configs.teacher()`) with the same encoder, width and
    sizes (§3.3)."""
    return replace(
        load_config(configs.teacher()),
        encoder=cfg.encoder,
        width=cfg.width,
        n_classes=cfg.n_classes,
        n_mels=cfg.n_mels,
        input_norm=cfg.input_norm,
    )


class SystemOutput(NamedTuple):
    logits: Tensor  # [B, n_classes]
    h: Tensor  # utterance representation from the encoder (Baseline-ne: the fused one) [B, D]
    h_tilde: Tensor | None  # calibrated representation, eq. (6) (systems with bridge)
    c: Tensor | None  # SNR coefficient, eq. (3) [B] (TRNet family)
    x_tilde: Tensor | None  # compensated LMFB, eq. (4) [B, T, F], zero beyond lengths (TRNet family)


class SERSystem(nn.Module):
    def __init__(self, cfg: SystemConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.snr = SNRAware(cfg.n_mels, input=cfg.snr_input, init=cfg.snr_init) if cfg.input == "trnet" else None
        self.encoder = ENCODERS[cfg.encoder](cfg.width, cfg.n_mels)
        d = self.encoder.out_dim
        # Baseline-ne: a 2-way softmax gate from [h_x; h_e] (~0.03 M parameters at d = 256)
        self.fusion = nn.Sequential(nn.Linear(2 * d, 64), nn.ReLU(), nn.Linear(64, 2)) if cfg.input == "ne" else None
        self.bridge = FiLMBridge(d) if cfg.bridge else None
        self.classifier = self.encoder.classifier(cfg.n_classes)

    def forward(self, x: Tensor | None, xe: Tensor | None, lengths: Tensor) -> SystemOutput:
        """Noisy X and enhanced X_e LMFB [B, T, F] (the one a system does not read may be None),
        valid frames [B] -> SystemOutput."""
        h_tilde = c = x_tilde = None
        if self.cfg.input == "x":
            h = self.embed(x, lengths)
        elif self.cfg.input == "xe":
            h = self.embed(xe, lengths)
        elif self.cfg.input == "ne":
            h_x, h_e = self.embed(torch.cat([x, xe]), torch.cat([lengths, lengths])).chunk(2)
            gate = self.fusion(torch.cat([h_x, h_e], 1)).softmax(1)
            h = gate[:, :1] * h_x + gate[:, 1:] * h_e
        else:
            x_tilde, c = self.snr(x, xe, lengths)
            h = self.embed(x_tilde, lengths)
            if self.bridge is not None:
                h_tilde = self.bridge(h, c)
        logits = self.classifier(h if h_tilde is None else h_tilde)
        return SystemOutput(logits, h, h_tilde, c, x_tilde)

    def embed(self, feats: Tensor, lengths: Tensor) -> Tensor:
        """The encoder's h of one LMFB input [B, T, F] (the teacher's h_s = embed(X_s))."""
        if self.cfg.input_norm == "utterance":
            feats = utterance_mean_norm(feats, lengths)
        return self.encoder(feats, lengths)


def utterance_mean_norm(feats: Tensor, lengths: Tensor) -> Tensor:
    """LMFB [B, T, F] less each utterance's per-mel-bin mean over its valid frames, padding 0: a
    channel and level offset of the speaker and microphone goes, the shape over time and bins
    stays (docs/design.md §7). Needs nothing but the utterance, so it works on one file."""
    mask = valid_mask(feats, lengths.clamp_min(1), 1).to(feats.dtype)
    mean = (feats * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True)
    return (feats - mean) * mask


class Teacher(SERSystem):
    """The frozen pre-trained SER module of §3.3: no gradients, eval mode whatever .train() says."""

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)

    @torch.no_grad()
    def embed(self, feats: Tensor, lengths: Tensor) -> Tensor:
        return super().embed(feats, lengths)


def build_teacher(state_dict: dict[str, Tensor], cfg: SystemConfig) -> Teacher:
    """The teacher from a trained Baseline-c `state_dict` and its config `cfg` (see teacher_config)."""
    teacher = Teacher(cfg)
    teacher.load_state_dict(state_dict)
    return teacher.requires_grad_(False).eval()
