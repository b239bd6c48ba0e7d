"""nEMO: the loader on a small generated tree in the release's exact layout (tab-separated
data.tsv whose speaker_id carries leading blanks, samples/<file_id>), `trnet prepare nemo`,
and the fold rule for corpora whose speakers are their own sessions."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from tests.corpus_fixtures import write_wav
from trnet.cli import main
from trnet.corpora import CorpusError, load, read_manifest
from trnet.protocol.folds import loso_folds, split

HEADER = "file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage"
# the release's nine speakers and genders; "        EB0" is how data.tsv spells a speaker
SPEAKERS = {
    "EB0": "female",
    "IC0": "female",
    "KD0": "female",
    "MK0": "female",
    "KS0": "male",
    "MP0": "male",
    "SM0": "male",
    "TP0": "male",
    "WR0": "male",
}
EMOTIONS = ("anger", "happiness", "neutral", "sadness", "fear", "surprised")


def nemo_tree(root: Path, per_emotion: int = 2, speakers: dict[str, str] = SPEAKERS, rate: int = 24_000) -> Path:
    """A release with `per_emotion` files of every emotion per speaker, listed in shuffled
    order like the real data.tsv, with the real whitespace and Polish text."""
    (root / "samples").mkdir(parents=True)
    lines = []
    for spk, gender in speakers.items():
        for emotion in EMOTIONS:
            for k in range(1, per_emotion + 1):
                name = f"{spk}_{emotion}_{k}.wav"
                write_wav(root / "samples" / name, rate * (1 + k), rate)
                lines.append(
                    f"{name}\t{emotion}\tCzłowiek zaczyna umierać.\tczłowiek zaczyna umierać\t        {spk}"
                    f"\t{gender}\t23"
                )
    lines = lines[1::2] + lines[::2]
    (root / "data.tsv").write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return root


def test_loader_strips_speakers_maps_labels_and_sets_aside(tmp_path: Path) -> None:
    result = load("nemo", nemo_tree(tmp_path / "nemo"))
    rows = result.rows
    assert len(rows) == 9 * 4 * 2
    assert {r["speaker"] for r in rows} == set(SPEAKERS)  # no leading blanks
    assert Counter(r["label"] for r in rows) == {"angry": 18, "happy": 18, "neutral": 18, "sad": 18}
    assert result.set_aside == {"fear": 18, "surprised": 18}
    for r in rows:
        emotion = r["id"].split("_")[1]
        assert r["label"] == {"anger": "angry", "happiness": "happy", "neutral": "neutral", "sadness": "sad"}[emotion]
        assert r["gender"] == ("F" if SPEAKERS[r["speaker"]] == "female" else "M")
        assert r["session"] == r["speaker"]  # no sessions in nEMO
        assert r["duration"] == pytest.approx(1 + int(r["id"].rsplit("_", 1)[1]))
        assert Path(r["path"]).is_file()
    assert [r["id"] for r in rows][:3] == ["EB0_anger_1", "EB0_anger_2", "EB0_happiness_1"]  # sorted, not file order


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / "data.tsv").unlink(), "data.tsv: not found"),
        (
            lambda root: (root / "samples" / "IC0_sadness_2.wav").unlink(),
            r"data.tsv:\d+: .*IC0_sadness_2.wav not found",
        ),
        (lambda root: (root / "data.tsv").write_text(HEADER.replace("speaker_id", "spk") + "\n"), "lacks column"),
        (
            lambda root: (root / "data.tsv").write_text(f"{HEADER}\n../x.wav\tanger\ta\ta\t EB0\tfemale\t1\n"),
            "not a file name",
        ),
        (
            lambda root: (root / "data.tsv").write_text(f"{HEADER}\nEB0_anger_1.wav\tanger\ta\ta\t EB0\tother\t1\n"),
            "gender 'other'",
        ),
        (lambda root: (root / "data.tsv").write_bytes(HEADER.encode() + b"\n\xff\n"), "not UTF-8"),
    ],
)
def test_loader_errors_name_the_problem(tmp_path: Path, damage, message: str) -> None:
    root = nemo_tree(tmp_path / "nemo", per_emotion=2)
    damage(root)
    with pytest.raises(CorpusError, match=message):
        load("nemo", root)


def test_prepare_nemo_prints_the_summary_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = nemo_tree(tmp_path / "nemo", per_emotion=1)
    assert main(["prepare", "nemo", "--root", str(root), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "nemo: 36 utterances, 9 speakers, 9 sessions" in out
    assert "set aside: fear 9, surprised 9 (18 in all)" in out
    assert any(line.split()[:2] == ["EB0", "EB0"] and line.split()[-1] == "4" for line in out.splitlines())
    assert len(read_manifest(tmp_path / "out" / "nemo.csv")) == 36


def test_folds_next_speaker_of_the_same_gender_validates(tmp_path: Path) -> None:
    rows = load("nemo", nemo_tree(tmp_path / "nemo", per_emotion=1)).rows
    folds = loso_folds(rows)
    assert [(f.test_speaker, f.val_speaker) for f in folds] == [
        ("EB0", "IC0"),
        ("IC0", "KD0"),
        ("KD0", "MK0"),
        ("MK0", "EB0"),
        ("KS0", "MP0"),
        ("MP0", "SM0"),
        ("SM0", "TP0"),
        ("TP0", "WR0"),
        ("WR0", "KS0"),
    ]
    assert sorted(f.test_speaker for f in folds) == sorted(SPEAKERS)  # every speaker tested once
    assert sorted(f.val_speaker for f in folds) == sorted(SPEAKERS)  # ... and validates once
    for f in folds:
        assert f.val_speaker != f.test_speaker
        assert SPEAKERS[f.val_speaker] == SPEAKERS[f.test_speaker]
        assert set(f.train_speakers) == set(SPEAKERS) - {f.test_speaker, f.val_speaker}  # no speaker in two roles
        s = split(rows, f.index)
        roles = [set(s.train), set(s.val), set(s.test)]
        assert not (roles[0] & roles[1] or roles[0] & roles[2] or roles[1] & roles[2])
        assert len(s.train) + len(s.val) + len(s.test) == len(rows)
        assert {rows[i]["speaker"] for i in s.test} == {f.test_speaker}


def test_folds_a_lone_speaker_of_a_gender_is_validated_by_the_next_speaker(tmp_path: Path) -> None:
    rows = load(
        "nemo", nemo_tree(tmp_path / "nemo", per_emotion=1, speakers={"A1": "male", "B1": "female", "C1": "female"})
    ).rows
    assert [(f.test_speaker, f.val_speaker) for f in loso_folds(rows)] == [("B1", "C1"), ("C1", "B1"), ("A1", "B1")]


def test_folds_refuse_mixed_session_layouts() -> None:
    rows = [dict(speaker=s, session=sess, gender="F") for s, sess in (("a", "1"), ("b", "1"), ("c", "2"))]
    with pytest.raises(ValueError, match="exactly 2 speakers in every session, or 1"):
        loso_folds(rows)
    with pytest.raises(ValueError, match="needs 3 or more"):
        loso_folds([dict(speaker=s, session=s, gender="F") for s in ("a", "b")])


def test_the_real_nemo_release_if_present() -> None:
    """Set TRNET_NEMO_ROOT to a checkout of github.com/amu-cai/nEMO to check the real counts."""
    root = os.environ.get("TRNET_NEMO_ROOT")
    if not root:
        pytest.skip("set TRNET_NEMO_ROOT to an nEMO release to check its real counts")
    result = load("nemo", Path(root))
    assert len(result.rows) == 3076 and result.set_aside == {"fear": 736, "surprised": 669}
    assert Counter(r["label"] for r in result.rows) == {"neutral": 809, "sad": 769, "angry": 749, "happy": 749}
    assert len({r["speaker"] for r in result.rows}) == 9
