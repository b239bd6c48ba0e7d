"""Run a model over one speaker's utterances under one condition: predictions, c, h, and the
oracle c of each utterance (the reference the estimated c is judged against, docs/design.md §6.2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trnet.batches import eval_batches
from trnet.evaluation.metrics import uar, war
from trnet.models.diagnostics import oracle_c
from trnet.store import Condition, ConditionStore


@dataclass
class Predictions:
    index: np.ndarray  # store rows, in the order evaluated
    y_true: np.ndarray
    y_pred: np.ndarray
    probs: np.ndarray  # [n, classes]
    c: np.ndarray | None  # estimated SNR coefficient per utterance (TRNet family)
    oracle: np.ndarray | None  # least-squares c per utterance (models.diagnostics.oracle_c), TRNet family
    h: np.ndarray | None  # utterance representation fed to the classifier (h̃ or h)
    ce: float  # mean cross-entropy

    def uar(self) -> float:
        return uar(self.y_true, self.y_pred, self.probs.shape[1])

    def war(self) -> float:
        return war(self.y_true, self.y_pred)

    def summary(self, cond: Condition) -> dict:
        """One condition's row of an evaluation: noise, SNR, UAR, WAR, mean and sd of c, n."""
        return {
            "noise": "clean" if cond == "clean" else cond[0],
            "snr": None if cond == "clean" else int(cond[1]),
            "uar": self.uar(),
            "war": self.war(),
            "mean_c": float(np.mean(self.c)) if self.c is not None else None,
            "c_std": float(np.std(self.c)) if self.c is not None else None,
            "n": int(len(self.y_true)),
        }


@torch.no_grad()
def predict_condition(
    model: torch.nn.Module,
    store: ConditionStore,
    labels: np.ndarray,
    rows: np.ndarray,
    cond: Condition,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    keep_h: bool = False,
) -> Predictions:
    was_training = model.training
    model.eval()
    idx, ys, ps, cs, oracles, hs, ces = [], [], [], [], [], [], []
    for batch in eval_batches(store, labels, rows, cond, batch_size):
        b = batch.to(device)
        out = model(b.x, b.xe, b.frames)
        ces.append(torch.nn.functional.cross_entropy(out.logits, b.y, reduction="sum").item())
        idx.append(batch.index)
        ys.append(batch.y.numpy())
        ps.append(out.logits.softmax(-1).cpu().numpy())
        if out.c is not None:
            cs.append(out.c.reshape(-1).cpu().numpy())
            oracles.append(oracle_c(batch.x, batch.xe, batch.xs, batch.frames).numpy())
        if keep_h:
            h = out.h_tilde if out.h_tilde is not None else out.h
            hs.append(h.cpu().numpy())
    model.train(was_training)
    probs = np.concatenate(ps)
    return Predictions(
        index=np.concatenate(idx),
        y_true=np.concatenate(ys),
        y_pred=probs.argmax(1),
        probs=probs,
        c=np.concatenate(cs) if cs else None,
        oracle=np.concatenate(oracles) if oracles else None,
        h=np.concatenate(hs) if hs else None,
        ce=float(np.sum(ces) / len(probs)),
    )
