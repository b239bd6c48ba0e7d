"""How much SNR information each candidate input of the SNR-aware module carries (issue #12).

    python bench/snr_estimators.py --store STORE [--train-noise esc50] [--test-noise demand]

For every candidate per-utterance feature vector (80 values from X and X_e alone), a linear
read-out (standardised features -> ridge, alpha by efficient leave-one-out on the training
rows) is fitted on a fold's TRAINING speakers under clean + the training noise, and tested
on the fold's TEST speaker under clean + the unseen test noise (and, as a second column, the
training noise). Targets: the SNR rank (clean 5, 20 dB 4, ..., 0 dB 0), and the oracle c
(least-squares c of eq. (5)). Reported per candidate, mean over all LOSO folds:

    ratio   between-condition variance of the read-out's per-condition means / mean
            within-condition variance (held-out speaker)
    rho     Spearman rho between read-out and SNR, clean highest (held-out speaker)
    rho_c   the same for a read-out fitted to the oracle c (clipped to [0, 1]); its mean per
            condition is printed too: the curve an FC trained towards the oracle c could reach
    spread  mean over bins of the std of the raw feature over training rows and conditions:
            how far an FC initialised at 0 must move its weights to make c vary by ~1

Also printed: the oracle c per condition (mean over utterances) and the mean raw d.

Measured on EmoDB (339 utterances, 10 folds), DFN3, ESC-50 (train) / DEMAND (test), store
built with the valid-sample SNR rule (48 s, 1 thread):

    input                ratio     rho   rho_c   rho esc50   spread   c-read-out (clean, 20 .. 0 dB)
    lmfb (paper)          0.33   0.505   0.562       0.585   0.0196   0.73 0.66 0.61 0.56 0.51 0.48
    mel-power             1.21   0.737   0.680       0.736   0.2770   0.64 0.59 0.55 0.50 0.46 0.44
    utt-centred           1.32   0.719   0.552       0.760   0.2090   0.76 0.67 0.64 0.60 0.56 0.52
    attenuation           1.81   0.747   0.379       0.747   2.5676   0.86 0.78 0.75 0.72 0.69 0.67
    mean d (1 value)      0.09   0.270   0.270       0.416   0.0178   0.57 0.56 0.56 0.55 0.55 0.54
    lmfb-std              1.47   0.762   0.747       0.753   0.4828   0.84 0.78 0.71 0.61 0.52 0.45
    oracle c itself       1.01   0.623               0.544
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from trnet.batches import condition_snr_db, snr_input_stats
from trnet.models.diagnostics import c_snr_spearman, oracle_c
from trnet.models.snr_aware import SNRAware
from trnet.protocol.folds import loso_folds
from trnet.store import ConditionStore, condition_name


def attenuation(x: torch.Tensor, xe: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames of X - X_e per mel bin: the log-power the SE removed."""
    valid = (torch.arange(x.shape[1])[None, :] < frames[:, None])[..., None]
    return ((x - xe) * valid).sum(1) / frames[:, None].clamp_min(1)


def centred_cosine(x: torch.Tensor, xe: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Eq. (1) after removing each utterance's own per-bin mean (a per-band Pearson correlation)."""
    valid = (torch.arange(x.shape[1])[None, :] < frames[:, None])[..., None]
    n = frames[:, None, None].clamp_min(1)
    xc = (x - (x * valid).sum(1, keepdim=True) / n) * valid
    ec = (xe - (xe * valid).sum(1, keepdim=True) / n) * valid
    return SNRAware().similarity(xc, ec)


def batches(store: ConditionStore, cond, batch: int = 64):
    """(X, X_e, X_s, frames) float32 tensors of every utterance under `cond`, in store order."""
    frames = torch.from_numpy(store.frames)
    for s in range(0, len(store), batch):
        idx = np.arange(s, min(len(store), s + batch))
        t = int(store.frames[idx].max())
        get = lambda a, idx=idx, t=t: torch.from_numpy(np.asarray(a[idx, :t], np.float32))  # noqa: E731
        yield get(store.noisy(cond)), get(store.enhanced(cond)), get(store.clean()), frames[idx]


def per_condition(store: ConditionStore, conds: list, fn) -> dict:
    """{condition: fn(X, X_e, X_s, frames) over all utterances, as one numpy array}."""
    with torch.no_grad():
        return {c: np.concatenate([fn(*b).numpy() for b in batches(store, c)]) for c in conds}


FIXED = {
    "lmfb (paper)": lambda x, xe, f: SNRAware(input="lmfb").features(x, xe, f),
    "mel-power": lambda x, xe, f: SNRAware(input="mel-power").features(x, xe, f),
    "utt-centred": centred_cosine,
    "attenuation": attenuation,
    "mean d (1 value)": lambda x, xe, f: SNRAware(input="lmfb").features(x, xe, f).mean(1, keepdim=True),
}


def readout(train_f, train_y, test_f):
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15)))
    return model.fit(train_f, train_y).predict(test_f)


def ratio(pred: np.ndarray, cond_ids: np.ndarray) -> float:
    groups = [pred[cond_ids == k] for k in np.unique(cond_ids)]
    between = np.var([g.mean() for g in groups])
    within = np.mean([g.var() for g in groups])
    return float(between / within) if within > 0 else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--train-noise", default="esc50")
    ap.add_argument("--test-noise", default="demand")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    store = ConditionStore(args.store)
    snrs = list(store.snrs)
    train_conds = ["clean", *[(args.train_noise, s) for s in snrs]]
    test_conds = ["clean", *[(args.test_noise, s) for s in snrs]]
    all_conds = list(dict.fromkeys(train_conds + test_conds))
    rank = {
        c: (len(snrs) if c == "clean" else len(snrs) - 1 - sorted(snrs, reverse=True).index(c[1])) for c in all_conds
    }
    spk = np.array([r["speaker"] for r in store.rows])
    folds = loso_folds(store.rows)

    # oracle c and raw d per condition (all utterances)
    oc = per_condition(store, all_conds, oracle_c)
    feats = {
        name: per_condition(store, all_conds, lambda x, xe, xs, f, fn=fn: fn(x, xe, f)) for name, fn in FIXED.items()
    }
    print("condition        oracle c (mean +- std)   mean raw d")
    for c in all_conds:
        print(
            f"  {condition_name(c):<14} {oc[c].mean():.3f} +- {oc[c].std():.3f}          "
            f"{feats['lmfb (paper)'][c].mean():.4f}"
        )

    def fold_eval(name: str, get) -> dict:
        res = {"ratio": [], "rho": [], "rho_esc": [], "rho_c": [], "spread": [], "curve_c": []}
        for fold in folds:
            tr = np.flatnonzero(np.isin(spk, fold.train_speakers))
            te = np.flatnonzero(spk == fold.test_speaker)
            F = get(fold)
            Xtr = np.concatenate([F[c][tr] for c in train_conds])
            ytr = np.concatenate([np.full(len(tr), rank[c], float) for c in train_conds])
            ctr = np.concatenate([oc[c][tr] for c in train_conds])
            res["spread"].append(float(Xtr.std(0).mean()))
            for key, conds in (("rho", test_conds), ("rho_esc", train_conds)):
                Xte = np.concatenate([F[c][te] for c in conds])
                ids = np.concatenate([np.full(len(te), k) for k, _ in enumerate(conds)])
                labels = [c for c in conds for _ in te]
                pred = readout(Xtr, ytr, Xte)
                res[key].append(c_snr_spearman(pred, condition_snr_db(labels).numpy()))
                if key == "rho":
                    res["ratio"].append(ratio(pred, ids))
                    pred_c = np.clip(readout(Xtr, ctr, Xte), 0, 1)
                    res["rho_c"].append(c_snr_spearman(pred_c, condition_snr_db(labels).numpy()))
                    res["curve_c"].append([pred_c[ids == k].mean() for k in range(len(conds))])
        return {k: np.mean(v, 0) for k, v in res.items()}

    rows = {name: fold_eval(name, lambda fold, name=name: feats[name]) for name in FIXED}

    def std_feats(fold) -> dict:
        m = SNRAware(input="lmfb-std")
        m.set_input_stats(*map(torch.from_numpy, snr_input_stats(store, fold.index, train_conds)))
        return per_condition(store, all_conds, lambda x, xe, xs, f: m.features(x, xe, f))

    rows["lmfb-std"] = fold_eval("lmfb-std", std_feats)
    ref = {"ratio": [], "rho": [], "rho_esc": []}
    for fold in folds:  # the oracle c itself, per held-out speaker: what tying c to it can reach
        te = np.flatnonzero(spk == fold.test_speaker)
        for key, conds in (("rho", test_conds), ("rho_esc", train_conds)):
            v = np.concatenate([oc[c][te] for c in conds])
            ref[key].append(c_snr_spearman(v, condition_snr_db([c for c in conds for _ in te]).numpy()))
            if key == "rho":
                ref["ratio"].append(ratio(v, np.concatenate([np.full(len(te), k) for k, _ in enumerate(conds)])))
    print(
        f"\nlinear read-out, fitted on training speakers (clean + {args.train_noise}), "
        f"tested on the held-out speaker; mean over {len(folds)} folds"
    )
    print(
        f"{'input':<18} {'ratio':>7} {'rho':>7} {'rho_c':>7}  {'rho ' + args.train_noise:>10} {'spread':>8}   "
        f"c-read-out per condition (clean, {', '.join(map(str, snrs))} dB)"
    )
    for name, r in rows.items():
        curve = " ".join(f"{v:.2f}" for v in r["curve_c"])
        print(
            f"{name:<18} {r['ratio']:7.2f} {r['rho']:7.3f} {r['rho_c']:7.3f}  {r['rho_esc']:10.3f} "
            f"{r['spread']:8.4f}   {curve}"
        )
    print(
        f"{'oracle c itself':<18} {np.mean(ref['ratio']):7.2f} {np.mean(ref['rho']):7.3f} {'':>7}  "
        f"{np.mean(ref['rho_esc']):10.3f}"
    )
    print(f"(ratio, rho, rho_c: {args.test_noise}, unseen; {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
