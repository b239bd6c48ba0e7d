"""Condition store: content, keying, determinism and crash-safe resume (SPEC §2, §4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import kill_when
from trnet.audio import load_audio, pad_or_trim, save_audio
from trnet.corpora import write_manifest
from trnet.enhance import Spec
from trnet.features import fbank, pad_frames
from trnet.store import BuildSpec, ConditionStore, SettingsChanged, StoreError, build


def make_corpus(root: Path, n_speakers: int = 4, per_speaker: int = 3) -> tuple[Path, Path]:
    """A tiny corpus of tones and a noise corpus of 6 sources, as manifests."""
    rng = np.random.default_rng(0)
    utts = []
    for s in range(n_speakers):
        for k in range(per_speaker):
            n = int(rng.integers(8_000, 40_000))
            t = np.arange(n) / 16_000
            wave = 0.3 * np.sin(2 * np.pi * (150 + 40 * s + 10 * k) * t * (1 + 0.2 * t)) * np.hanning(n)
            path = root / "speech" / f"s{s}_{k}.wav"
            save_audio(path, wave.astype(np.float32))
            utts.append(
                {
                    "id": f"s{s}_{k}",
                    "path": str(path),
                    "label": ("angry", "happy", "neutral", "sad")[k % 4],
                    "speaker": f"spk{s}",
                    "session": str(s // 2 + 1),
                    "gender": "FM"[s % 2],
                    "duration": f"{n / 16_000:.3f}",
                }
            )
    noise = []
    for j in range(10):
        path = root / "noise" / f"n{j}.wav"
        save_audio(path, (0.1 * rng.standard_normal(int(rng.integers(20_000, 100_000)))).astype(np.float32))
        noise.append(
            {"id": f"n{j}", "path": str(path), "source": f"src{j}", "category": "white", "offset": "0", "duration": "5"}
        )
    write_manifest(root / "corpus.csv", utts, "utterances")
    write_manifest(root / "noise.csv", noise, "noise")
    return root / "corpus.csv", root / "noise.csv"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def spec(corpus, seed: int = 1, se: str = "identity") -> BuildSpec:
    return BuildSpec(corpus=corpus[0], noise={"white": corpus[1]}, se=Spec(se), seed=seed, snrs=(20, 5, 0))


def arrays(store: ConditionStore) -> dict[str, np.ndarray]:
    return {f"{c}/{k}": np.array(getattr(store, k)(c)) for c in store.conditions for k in ("noisy", "enhanced")}


def test_content_matches_features_of_the_audio(corpus, tmp_path):
    store = ConditionStore(build(spec(corpus), tmp_path / "store", quiet=True))
    assert len(store) == 12 and store.conditions == ["clean", ("white", 20), ("white", 5), ("white", 0)]
    row = store.rows[3]
    wave, n = pad_or_trim(load_audio(row["path"]))
    feats, frames = fbank(torch.from_numpy(wave)[None], torch.tensor([n]))
    np.testing.assert_allclose(store.clean()[3].astype(np.float32), pad_frames(feats)[0].numpy(), atol=0.02)
    assert store.frames[3] == frames[0]
    # identity SE: enhanced equals noisy on the valid frames
    v = int(store.frames[3])
    np.testing.assert_array_equal(store.enhanced(("white", 5))[3][:v], store.noisy(("white", 5))[3][:v])
    # more noise, further from clean
    dist = [
        np.abs(store.noisy(c)[3][:v].astype(np.float32) - store.clean()[3][:v]).mean() for c in store.conditions[1:]
    ]
    assert dist[0] < dist[1] < dist[2]
    achieved = json.loads((store.root / "summary.json").read_text())["achieved_snr_db"]
    for target in (20, 5, 0):
        assert abs(achieved[f"white@{target}"] - target) < 0.01


def test_same_seed_same_store_other_seed_other_noise(corpus, tmp_path):
    a = ConditionStore(build(spec(corpus, seed=1), tmp_path / "a", quiet=True))
    b = ConditionStore(build(spec(corpus, seed=1), tmp_path / "b", quiet=True))
    c = ConditionStore(build(spec(corpus, seed=2), tmp_path / "c", quiet=True))
    for k, v in arrays(a).items():
        np.testing.assert_array_equal(v, arrays(b)[k])
    assert (a.root / "white" / "assignment.csv").read_text() == (b.root / "white" / "assignment.csv").read_text()
    assert (a.root / "white" / "assignment.csv").read_text() != (c.root / "white" / "assignment.csv").read_text()


def test_changed_settings_are_refused_unless_rebuild(corpus, tmp_path):
    build(spec(corpus, seed=1), tmp_path / "s", quiet=True)
    with pytest.raises(SettingsChanged, match="seed 1 -> 3"):
        build(spec(corpus, seed=3), tmp_path / "s", quiet=True)
    build(spec(corpus, seed=3), tmp_path / "s", quiet=True, rebuild=True)
    assert ConditionStore(tmp_path / "s").key["seed"] == 3


def test_unfinished_store_refuses_to_open(tmp_path):
    with pytest.raises(StoreError, match="trnet conditions"):
        ConditionStore(tmp_path)


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_to_identical_store(corpus, tmp_path):
    reference = ConditionStore(build(spec(corpus), tmp_path / "ref", quiet=True))
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "trnet.cli",
        "conditions",
        "--corpus",
        str(corpus[0]),
        "--noise",
        f"white={corpus[1]}",
        "--se",
        "identity",
        "--seed",
        "1",
        "--snrs",
        "20,5,0",
        "--workers",
        "1",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    kill_when(out / "chunks" / "0.json", proc, group=True)  # the build and its workers, as a crash would
    assert not (out / "summary.json").exists(), "build finished before it could be killed"
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    resumed = ConditionStore(out)
    for k, v in arrays(reference).items():
        np.testing.assert_array_equal(v, arrays(resumed)[k])
    np.testing.assert_array_equal(reference.frames, resumed.frames)
