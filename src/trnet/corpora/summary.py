"""What `trnet prepare` and a recipe print about a corpus: utterances per class x session, or
noise clips per category, and what the loader set aside."""

from __future__ import annotations

from collections import Counter, defaultdict

from trnet.corpora.manifest import LABELS, LoadResult, natural_key


def summary(name: str, result: LoadResult) -> str:
    """A plain-text table: utterances per class x session, or noise clips per category."""
    rows = result.rows
    lines: list[str] = []
    if result.kind == "utterances":
        classes = [c for c in LABELS if any(r["label"] == c for r in rows)]
        classes += sorted({r["label"] for r in rows} - set(classes))
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        speakers: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            counts[r["session"]][r["label"]] += 1
            speakers[r["session"]].add(r["speaker"])
        n_spk = len({r["speaker"] for r in rows})
        lines.append(f"{name}: {len(rows)} utterances, {n_spk} speakers, {len(counts)} sessions")
        lines.append(f"{'session':<10}{'speakers':<14}" + "".join(f"{c:>9}" for c in classes) + f"{'total':>9}")
        for s in sorted(counts, key=natural_key):
            lines.append(
                f"{s:<10}{','.join(sorted(speakers[s])):<14}"
                + "".join(f"{counts[s][c]:>9}" for c in classes)
                + f"{sum(counts[s].values()):>9}"
            )
        totals = Counter(r["label"] for r in rows)
        lines.append(f"{'total':<24}" + "".join(f"{totals[c]:>9}" for c in classes) + f"{len(rows):>9}")
    else:
        clips: Counter[str] = Counter(r["category"] for r in rows)
        sources: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            sources[r["category"]].add(r["source"])
        n_src = len({r["source"] for r in rows})
        lines.append(
            f"{name}: {len(rows)} clips from {n_src} source recordings, {len(clips)} "
            + ("category" if len(clips) == 1 else "categories")
        )
        width = max(12, *(len(c) + 2 for c in clips))
        lines.append(f"{'category':<{width}}{'clips':>7}{'sources':>9}")
        for c in sorted(clips):
            lines.append(f"{c:<{width}}{clips[c]:>7}{len(sources[c]):>9}")
        lines.append(f"{'total':<{width}}{len(rows):>7}{n_src:>9}")
    if result.set_aside:
        lines.append(
            "set aside: "
            + ", ".join(f"{k} {v}" for k, v in result.set_aside.items())
            + f" ({sum(result.set_aside.values())} in all)"
        )
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)
