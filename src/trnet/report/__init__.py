"""Reporting on a results directory: the paper's tables and figures, statistics and the
validation-only choice of a system. It reads only what `trnet reproduce` wrote (results.py
owns that layout), so a results directory can be copied elsewhere and reported there.

    results.py    the results directory: tidy rows, runs, meta, per-run predictions
    tables.py     Table 1, per-SNR tables, Table 2, significance tables
    stats.py      paired tests over (fold, seed) runs
    figures.py    UAR vs SNR, Figure 2 (c vs SNR), Figure 3 (t-SNE), confusion matrices
    selection.py  does c track the SNR; the system validation picks
    markdown.py   report.md: all of the above in one document"""
