"""Corpus loaders, manifests and `trnet prepare`, checked against the real counts: on the
shared data where present, and on trees generated in the real layouts from the authors'
reference metadata."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.corpus_fixtures import (
    IEMOCAP_OTHER,
    iemocap_tree,
    make_esc50,
    make_musan,
    shared,
    write_iemocap,
    write_wav,
)
from trnet.cli import main
from trnet.corpora import (
    LABELS,
    NOISE_COLUMNS,
    UTTERANCE_COLUMNS,
    CorpusError,
    emodb,
    esc50,
    folder,
    iemocap,
    musan,
    noisefolder,
    read_manifest,
    write_manifest,
)

IEMOCAP_SPEAKERS = {
    "Ses01F": 528,
    "Ses01M": 557,
    "Ses02F": 481,
    "Ses02M": 542,
    "Ses03F": 522,
    "Ses03M": 629,
    "Ses04F": 528,
    "Ses04M": 503,
    "Ses05F": 590,
    "Ses05M": 651,
}


def utterance(i: int, **kw: object) -> dict[str, object]:
    return (
        dict(id=f"u{i}", path=f"/data/u{i}.wav", label="sad", speaker="s1", session="1", gender="F", duration=1.25) | kw
    )


# ---------------------------------------------------------------- manifests


def test_labels_contract() -> None:
    assert LABELS == ("angry", "happy", "neutral", "sad")


def test_manifest_round_trip_keeps_column_order_and_makes_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [utterance(0, path="rel/a.wav"), utterance(1, label="angry", duration=2.0)]
    out = write_manifest(tmp_path / "m" / "u.csv", rows, "utterances")
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(UTTERANCE_COLUMNS)
    assert [p.name for p in out.parent.iterdir()] == ["u.csv"]  # no temp file left behind
    back = read_manifest(out)
    assert back[0]["path"] == str(tmp_path / "rel" / "a.wav")
    assert back[1] == {**rows[1], "duration": 2.0}
    noise = [dict(id="n_0", path="/x/n.wav", source="n", category="rain", offset=5.0, duration=5.0)]
    out = write_manifest(tmp_path / "n.csv", noise, "noise")
    assert out.read_text().splitlines()[0] == ",".join(NOISE_COLUMNS)
    assert read_manifest(out) == noise


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "not a manifest header"),
        ("id,path,label\nu,/a.wav,sad\n", "not a manifest header"),
        (",".join(UTTERANCE_COLUMNS) + "\nu,/a.wav,sad,s,1,F\n", "6 fields, expected 7"),
        (",".join(UTTERANCE_COLUMNS) + "\nu,/a.wav,sad,s,1,F,long\n", "duration 'long' is not a number"),
        (",".join(UTTERANCE_COLUMNS) + "\nu,/a.wav,sad,s,1,F,1\nu,/b.wav,sad,s,1,F,1\n", "duplicate id"),
    ],
)
def test_read_manifest_rejects_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(CorpusError, match=message):
        read_manifest(tmp_path / "m.csv")


def test_manifest_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="manifest not found"):
        read_manifest(tmp_path / "absent.csv")
    with pytest.raises(CorpusError, match="lacks column"):
        write_manifest(tmp_path / "m.csv", [{"id": "u"}], "utterances")
    with pytest.raises(CorpusError, match="unknown manifest kind"):
        write_manifest(tmp_path / "m.csv", [], "speech")  # type: ignore[arg-type]
    assert not (tmp_path / "m.csv").exists()


# ---------------------------------------------------------------- IEMOCAP


def test_iemocap_speaker_is_the_letter_before_the_number() -> None:
    assert iemocap.speaker_of("Ses01F_script01_3_M012") == ("Ses01M", "1", "M")
    assert iemocap.speaker_of("Ses05M_impro03b_F007") == ("Ses05F", "5", "F")
    with pytest.raises(CorpusError, match="not an IEMOCAP utterance id"):
        iemocap.speaker_of("Ses01F_impro01")


def test_iemocap_parser_on_a_small_built_in_tree(tmp_path: Path) -> None:
    turns = {
        "Ses01F_impro01": [
            ("Ses01F_impro01_F000", "neu"),
            ("Ses01F_impro01_M000", "exc"),
            ("Ses01F_impro01_F001", "fru"),
            ("Ses01F_impro01_M001", "xxx"),
        ],
        "Ses01F_script01_3": [("Ses01F_script01_3_M012", "ang"), ("Ses01F_script01_3_F000", "hap")],
        "Ses02M_impro02": [("Ses02M_impro02_F003", "sad"), ("Ses02M_impro02_M001", "sur")],
    }
    write_iemocap(tmp_path, turns)
    (tmp_path / "Session2/sentences/wav/Ses02M_impro02/Ses02M_impro02_F003.wav").unlink()
    result = iemocap.load(tmp_path)
    got = {r["id"]: (r["label"], r["speaker"], r["session"], r["gender"]) for r in result.rows}
    assert got == {
        "Ses01F_impro01_F000": ("neutral", "Ses01F", "1", "F"),
        "Ses01F_impro01_M000": ("happy", "Ses01M", "1", "M"),
        "Ses01F_script01_3_M012": ("angry", "Ses01M", "1", "M"),
        "Ses01F_script01_3_F000": ("happy", "Ses01F", "1", "F"),
    }
    assert result.set_aside == {"label fru": 1, "label sur": 1, "label xxx": 1, "missing wav": 1}
    assert all(Path(r["path"]).is_absolute() and r["duration"] == pytest.approx(0.05) for r in result.rows)
    assert any("Session1, Session2" in n for n in result.notes)


def test_iemocap_parser_ignores_everything_but_turn_lines() -> None:
    text = (
        "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
        "C-E1:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"
        "[10.0100 - 11.3925]\tSes01F_impro01_M001\tfru\t[2.0000, 3.5000, 3.5000]\n"
    )
    assert iemocap.parse_evaluation(text) == [("Ses01F_impro01_F000", "neu"), ("Ses01F_impro01_M001", "fru")]


def test_iemocap_wrong_layout_says_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / "Session1").mkdir()
    with pytest.raises(CorpusError, match=r"Session\{1..5\}/dialog/EmoEvaluation/\*.txt"):
        iemocap.load(tmp_path)


@pytest.fixture(scope="module")
def iemocap_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    return iemocap_tree(tmp_path_factory)


def test_iemocap_real_counts_on_a_full_generated_release(iemocap_release: tuple[Path, list[dict[str, str]]]) -> None:
    root, reference = iemocap_release
    result = iemocap.load(root)
    assert len(result.rows) == 5531
    assert Counter(r["label"] for r in result.rows) == {"angry": 1103, "happy": 1636, "neutral": 1708, "sad": 1084}
    assert Counter(r["speaker"] for r in result.rows) == IEMOCAP_SPEAKERS
    expected = {
        r["filename"]: (
            {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}[r["label"]],
            r["speaker"],
            r["sex"],
            r["fold"],
        )
        for r in reference
    }
    assert {r["id"]: (r["label"], r["speaker"], r["gender"], r["session"]) for r in result.rows} == expected
    assert result.set_aside == {f"label {k}": v for k, v in sorted(IEMOCAP_OTHER.items())}
    assert result.notes == []


def test_prepare_iemocap_cli(
    iemocap_release: tuple[Path, list[dict[str, str]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = iemocap_release
    assert main(["prepare", "iemocap", "--root", str(root), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "iemocap: 5531 utterances, 10 speakers, 5 sessions" in out and "label fru 1849" in out
    assert out.splitlines()[7].split()[-5:] == ["1103", "1636", "1708", "1084", "5531"]
    assert len(read_manifest(tmp_path / "iemocap.csv")) == 5531


# ---------------------------------------------------------------- EmoDB


def test_emodb_names_sessions_and_set_aside_classes(tmp_path: Path) -> None:
    for name in ("03a01Fa", "08a02Wb", "10b09Tc", "16a05Nd", "09a01La", "11b03Ea", "12a01Ab"):
        write_wav(tmp_path / "wav" / f"{name}.wav", 1600)
    result = emodb.load(tmp_path)
    got = {r["id"]: (r["label"], r["speaker"], r["session"], r["gender"]) for r in result.rows}
    assert got == {
        "03a01Fa": ("happy", "03", "1", "M"),
        "08a02Wb": ("angry", "08", "1", "F"),
        "10b09Tc": ("sad", "10", "2", "M"),
        "16a05Nd": ("neutral", "16", "5", "F"),
    }
    assert result.set_aside == {"boredom (L)": 1, "disgust (E)": 1, "fear (A)": 1}
    write_wav(tmp_path / "wav" / "notes.wav", 10)
    with pytest.raises(CorpusError, match="not an EmoDB file name"):
        emodb.load(tmp_path)


def test_emodb_on_the_shared_copy() -> None:
    result = emodb.load(shared("emodb"))
    assert len(result.rows) == 339
    assert result.set_aside == {"boredom (L)": 81, "disgust (E)": 46, "fear (A)": 69}
    pairs = {(r["session"], r["speaker"], r["gender"]) for r in result.rows}
    assert pairs == {
        ("1", "03", "M"),
        ("1", "08", "F"),
        ("2", "09", "F"),
        ("2", "10", "M"),
        ("3", "11", "M"),
        ("3", "13", "F"),
        ("4", "12", "M"),
        ("4", "14", "F"),
        ("5", "15", "M"),
        ("5", "16", "F"),
    }


def test_prepare_emodb_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = shared("emodb")
    assert main(["prepare", "emodb", "--root", str(root), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "emodb: 339 utterances, 10 speakers, 5 sessions" in out
    assert "set aside: boredom (L) 81, disgust (E) 46, fear (A) 69 (196 in all)" in out
    rows = read_manifest(tmp_path / "emodb.csv")
    assert len(rows) == 339 and all(Path(r["path"]).is_file() for r in rows)


@pytest.mark.parametrize(
    "corpus, layout, expected",
    [
        ("emodb", "", "ROOT/wav/"),
        ("iemocap", "", "EmoEvaluation"),
        ("esc50", "audio", "ROOT/meta/esc50.csv"),
        ("musan", "noise/free-sound", "no \\*.wav recordings"),
        ("folder", "", "labels.csv: not found"),
        ("noise", "", "no wav/flac/ogg files"),
    ],
)
def test_prepare_errors_are_one_line_exit_2_and_no_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], corpus: str, layout: str, expected: str
) -> None:
    root = tmp_path / "root"
    (root / layout).mkdir(parents=True)
    out = tmp_path / "out"
    for r in (root, tmp_path / "absent"):
        assert main(["prepare", corpus, "--root", str(r), "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[1].endswith("(--root must be the " + corpus + " corpus root)")
    assert err[0].startswith("trnet prepare: error:")
    assert re.search(expected, err[0]), err[0]
    assert not out.exists()


# ---------------------------------------------------------------- ESC-50


def test_esc50_shared_subset_loads_unchanged() -> None:
    result = esc50.load(shared("esc50"))
    assert len(result.rows) == 800 and result.set_aside == {}
    assert len({r["source"] for r in result.rows}) == 613
    assert Counter(r["category"] for r in result.rows) == {c: 16 for c in {r["category"] for r in result.rows}}
    assert {(r["offset"], r["duration"]) for r in result.rows} == {(0.0, 5.0)}
    first = next(r for r in result.rows if r["id"] == "1-100032-A-0")
    assert first["source"] == "100032" and first["category"] == "dog"


def test_esc50_full_generated_release(tmp_path: Path) -> None:
    reference = make_esc50(tmp_path)
    result = esc50.load(tmp_path)
    assert len(result.rows) == 2000 and len({r["source"] for r in result.rows}) == 1524
    assert {r["id"]: r["source"] for r in result.rows} == {Path(r["filename"]).stem: r["src_file"] for r in reference}
    (tmp_path / "audio" / reference[0]["filename"]).unlink()
    result = esc50.load(tmp_path)
    assert len(result.rows) == 1999 and result.set_aside == {"listed in esc50.csv, no audio": 1}


# ---------------------------------------------------------------- MUSAN


def test_musan_cutting_rule(tmp_path: Path) -> None:
    for name, seconds in (
        ("noise-free-sound-0000", 4.99),
        ("noise-free-sound-0001", 5.0),
        ("noise-free-sound-0002", 14.99),
    ):
        write_wav(tmp_path / "noise" / "free-sound" / f"{name}.wav", int(seconds * 16_000))
    write_wav(tmp_path / "noise" / "sound-bible" / "noise-sound-bible-0000.wav", 16_000 * 6)
    result = musan.load(tmp_path)
    assert [(r["id"], r["source"], r["offset"], r["duration"]) for r in result.rows] == [
        ("noise-free-sound-0001_0", "noise-free-sound-0001", 0.0, 5.0),
        ("noise-free-sound-0002_0", "noise-free-sound-0002", 0.0, 5.0),
        ("noise-free-sound-0002_1", "noise-free-sound-0002", 5.0, 5.0),
    ]
    assert result.set_aside == {"free-sound recordings shorter than 5 s": 1}
    both = musan.load(tmp_path, subsets=["free-sound", "sound-bible"])
    assert both.rows[-1]["id"] == "noise-sound-bible-0000_0" and both.rows[-1]["category"] == "sound-bible"
    with pytest.raises(CorpusError, match="unknown MUSAN noise subset"):
        musan.load(tmp_path, subsets=["music"])


def test_musan_reproduces_the_authors_segment_list(tmp_path: Path) -> None:
    reference = make_musan(tmp_path)
    result = musan.load(tmp_path)
    assert len(result.rows) == 3860 and len({r["source"] for r in result.rows}) == 631
    assert {r["id"]: r["source"] for r in result.rows} == {Path(r["filename"]).stem: r["src_file"] for r in reference}
    assert result.set_aside == {"free-sound recordings shorter than 5 s": 843 - 631}
    assert all(r["offset"] == 5 * int(r["id"].rsplit("_", 1)[1]) for r in result.rows)
    assert len(musan.load(tmp_path, subsets=["free-sound", "sound-bible"]).rows) > 3860


# ---------------------------------------------------------------- noise folders


def test_noise_folder_cuts_like_musan_and_keeps_short_files_whole(tmp_path: Path) -> None:
    write_wav(tmp_path / "cafe" / "a.wav", int(12.5 * 16_000))
    write_wav(tmp_path / "cafe" / "b.wav", 5 * 16_000)
    write_wav(tmp_path / "street" / "deep" / "c.wav", 3 * 8_000, 8_000)
    sf.write(tmp_path / "street" / "d.flac", np.zeros(7 * 16_000, dtype=np.float32), 16_000)
    sf.write(tmp_path / "street" / "e.ogg", np.zeros(2 * 16_000, dtype=np.float32), 16_000)
    (tmp_path / "street" / "notes.txt").write_text("not audio")
    rows = noisefolder.load(tmp_path).rows
    got = [(r["id"], r["source"], r["category"], r["offset"], round(r["duration"], 3)) for r in rows]
    assert got == [
        ("cafe__a_0", "cafe__a", "cafe", 0.0, 5.0),
        ("cafe__a_1", "cafe__a", "cafe", 5.0, 5.0),
        ("cafe__b_0", "cafe__b", "cafe", 0.0, 5.0),
        ("street__d_0", "street__d", "street", 0.0, 5.0),
        ("street__deep__c_0", "street__deep__c", "deep", 0.0, 3.0),
        ("street__e_0", "street__e", "street", 0.0, 2.0),
    ]


def test_noise_folder_on_demand_vbd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = shared("noise", "demand-vbd")
    rows = noisefolder.load(root).rows
    files = sorted(root.glob("*.wav"))
    assert len(files) == 25 and {r["source"] for r in rows} == {f.stem for f in files}
    for f in files:
        info = sf.info(str(f))
        mine = [r for r in rows if r["source"] == f.stem]
        assert len(mine) == max(1, info.frames // (5 * info.samplerate))
        assert mine[0]["duration"] == pytest.approx(min(5.0, info.duration))
    assert main(["prepare", "noise", "--root", str(root), "--out", str(tmp_path)]) == 0
    assert "noise: 25 clips from 25 source recordings, 1 category" in capsys.readouterr().out
    assert read_manifest(tmp_path / "noise.csv") == rows


# ---------------------------------------------------------------- bring-your-own folder


def write_folder(root: Path, entries: list[tuple[str, ...]], header: str = "file,label,speaker,session,gender") -> Path:
    for entry in entries:
        write_wav(root / entry[0], 16_000)
    with (root / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows([header.split(","), *entries])
    return root


def test_folder_with_sessions(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path,
        [
            ("a/1.wav", "angry", "s1", "A", "F"),
            ("a/2.wav", "Sad", "s2", "A", "male"),
            ("b/1.wav", "calm", "s3", "B", "F"),
            ("b/2.wav", "happy", "s3", "B", "F"),
            ("b/3.wav", "neutral", "s4", "B", "M"),
        ],
    )
    result = folder.load(root)
    assert [(r["id"], r["label"], r["session"], r["gender"]) for r in result.rows] == [
        ("a__1", "angry", "A", "F"),
        ("a__2", "sad", "A", "M"),
        ("b__2", "happy", "B", "F"),
        ("b__3", "neutral", "B", "M"),
    ]
    assert result.set_aside == {"label calm": 1} and result.notes == []
    assert len(folder.load(root, labels=["angry", "sad"]).rows) == 2  # a subset of the four classes
    with pytest.raises(CorpusError, match="calm is not one of the classes"):  # the models have exactly four
        folder.load(root, labels=["calm", *LABELS])


def test_folder_without_sessions_pairs_speakers_in_sorted_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = [
        (f"{spk}_{i}.wav", label, spk) for spk in ("sp10", "sp2", "sp3", "sp1") for i, label in enumerate(LABELS)
    ]
    root = write_folder(tmp_path / "c", entries, header="file,label,speaker")
    result = folder.load(root / "labels.csv")
    assert {r["speaker"]: r["session"] for r in result.rows} == {"sp1": "1", "sp2": "1", "sp3": "2", "sp10": "2"}
    assert result.notes == [
        "no session column: speakers paired in sorted order into sessions 1=(sp1,sp2), 2=(sp3,sp10)"
    ]
    assert main(["prepare", "folder", "--root", str(root), "--out", str(tmp_path / "o"), "--name", "mine"]) == 0
    assert "note: no session column" in capsys.readouterr().out
    assert len(read_manifest(tmp_path / "o" / "mine.csv")) == 16


@pytest.mark.parametrize(
    "entries, header, message",
    [
        (
            [("1.wav", "sad", "a"), ("2.wav", "sad", "b"), ("3.wav", "sad", "c")],
            "file,label,speaker",
            "cannot be paired",
        ),
        (
            [("1.wav", "sad", "a", "1"), ("2.wav", "sad", "b", "1"), ("3.wav", "sad", "c", "1")],
            "file,label,speaker,session",
            "session 1 has 3 speaker",
        ),
        (
            [("1.wav", "sad", "a", "1"), ("2.wav", "sad", "a", "2")],
            "file,label,speaker,session",
            "several session values",
        ),
        ([("1.wav", "sad")], "file,label", "lacks column"),
        ([("1.wav", "joy", "a")], "file,label,speaker", "no row with a label"),
    ],
)
def test_folder_errors(tmp_path: Path, entries: list[tuple[str, ...]], header: str, message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        folder.load(write_folder(tmp_path, entries, header))


def test_folder_missing_audio_names_the_line(tmp_path: Path) -> None:
    root = write_folder(tmp_path, [("1.wav", "sad", "a"), ("2.wav", "sad", "b")], header="file,label,speaker")
    (root / "2.wav").unlink()
    with pytest.raises(CorpusError, match=r"labels.csv:3: .*2.wav not found"):
        folder.load(root)


def test_prepare_synthetic_loads_the_generated_folder_and_noise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trnet.corpora import synthetic

    def fake_generate(root: Path, seed: int, *sizes: object) -> Path:
        entries = [
            (f"speech/{spk}_{label}.wav", label, spk, str(i // 2 + 1), spk[0])
            for i, spk in enumerate(("F01", "M01", "F02", "M02"))
            for label in LABELS
        ]
        write_wav(Path(root) / "noise" / "hum" / f"s{seed}.wav", 16_000 * 11)
        return write_folder(Path(root), entries) / "labels.csv"

    monkeypatch.setattr(synthetic, "generate", fake_generate)
    assert (
        main(["prepare", "synthetic", "--root", str(tmp_path / "syn"), "--out", str(tmp_path / "o"), "--opt", "seed=3"])
        == 0
    )
    assert "synthetic: 16 utterances, 4 speakers, 2 sessions" in capsys.readouterr().out
    assert len(read_manifest(tmp_path / "o" / "synthetic.csv")) == 16
    assert [r["id"] for r in read_manifest(tmp_path / "o" / "synthetic_noise.csv")] == ["hum__s3_0", "hum__s3_1"]
