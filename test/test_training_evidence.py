"""Fitting the object evidence head (live_ros/training/evidence.py, ``live-ros fit-evidence``)
and training with it (live_ros/training/model_setup.py): each frame's targets follow the
annotation's tracks, objects outside the vocabulary are the generic class, any object in view
sets the last class (ANY_OBJECT, "something"), a separable frame
set is learnt exactly, a split folder gives a head file that load_head reads, and a run with
``model.evidence`` loads that head frozen beside trainable class names. Tiny real models and
real files; the features of the split folders carry each class's visibility in one value (so
that a linear head can read it)."""

from __future__ import annotations

import pytest
import torch
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file
from torch import nn
from training_helpers import DIM, ENC, NTOK, make_run

from live_ros import cli
from live_ros.data.annotations import VideoAnnotation, save_annotation
from live_ros.data.features import FORMAT, save_features
from live_ros.data.generic import GENERIC_NOUN
from live_ros.data.streams import StreamSample, save_samples
from live_ros.model.config import EvidenceSettings
from live_ros.model.evidence import ObjectEvidence, evidence_logits, load_head, save_head
from live_ros.model.format import Turn
from live_ros.training.config import ConfigError, load_config
from live_ros.training.evidence import (
    ANY_OBJECT,
    FrameSet,
    classes_of,
    fit,
    fit_evidence,
    frame_targets,
    input_dim_of,
    load_frames,
    report,
)
from live_ros.training.model_setup import build_model, init_adapter, resolve_model

VOCABULARY = ("cat", "dog")
CLASSES = (*VOCABULARY, GENERIC_NOUN, ANY_OBJECT)
BOX = [0, 0, 10, 10]


def _track(*spans):
    """Run-length rows [time, box, visible] of an actor visible over the (start, end) spans."""
    rows = []
    for start, end in spans:
        rows += [[start, BOX, True], [end, None, False]]
    return rows


# (video id, {actor: visible spans}, actors -> nouns); 4 s at 2 fps: frames at 0, 0.5, ..., 4
TRAIN = [
    ("v0", {"cat": [(0.0, 2.0)], "dog": [(1.5, 4.5)]}, {"cat": "cat", "dog": "dog"}),
    ("v1", {"cat#2": [(2.0, 4.5)], "helmet": [(0.0, 1.0)]}, {"cat#2": "cat", "helmet": "helmet"}),
    ("v2", {"dog#1": [(1.0, 3.0)], "helmet": [(2.5, 4.5)]}, {"dog#1": "dog", "helmet": "helmet"}),
]
VAL = [("v3", {"cat": [(0.0, 1.0)], "rocket": [(1.0, 3.0)], "dog": [(3.0, 4.5)]}, {"rocket": "rocket"})]


def write_split(folder, videos, encoder_id=ENC, seed=0):
    """A split folder as the world writes it: streams.jsonl whose samples name their
    annotation, features/ with one file per video. Token features: noise, and in value c of
    every token +2 while an object of class c is in view, -2 otherwise."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    for video_id, spans, actors in videos:
        tracks = {actor: _track(*s) for actor, s in spans.items()}
        annotation = VideoAnnotation(video_id, 4.0, tracks=tracks, meta={"actors": actors})
        path = save_annotation(annotation, folder / "annotations" / f"{video_id}.json")
        sample = StreamSample(video_id, 4.0, 2.0, meta={"annotation": str(path)})
        samples.append(sample)
        times = torch.arange(sample.num_frames, dtype=torch.float64) / 2.0
        targets = frame_targets(annotation, times.tolist(), CLASSES)
        tokens = 0.1 * torch.randn(len(times), NTOK, DIM, generator=g)
        tokens[..., : len(CLASSES)] += (4 * targets - 2).unsqueeze(1)
        meta = {"format": FORMAT, "encoder_id": encoder_id, "fps": 2.0, "video": f"{video_id}.mp4"}
        meta.update(num_frames=len(times), num_tokens=NTOK, dim=DIM)
        save_features(folder / "features" / f"{video_id}.safetensors", tokens.half(), times, meta)
    save_samples(samples, folder / "streams.jsonl")
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tensors here are tiny: one torch thread (no waits for busy cores); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("evidence")
    return write_split(root / "train", TRAIN), write_split(root / "val", VAL, seed=1)


def _rows(text: str) -> dict[str, tuple[int, str, str]]:
    """{class: (frames in view, recall, precision)} of one report's table."""
    rows = {}
    for line in text.splitlines():
        noun, rest = line[:24].strip(), line[24:].split()
        if noun in CLASSES and len(rest) == 3:
            rows[noun] = (int(rest[0]), rest[1], rest[2])
    return rows


def test_frame_targets_follow_the_tracks():
    times = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    annotation = VideoAnnotation(
        "v",
        3.0,
        tracks={
            "cat": [[0.0, BOX, True], [1.0, None, False], [2.0, BOX, True]],
            "cat#2": [[1.5, BOX, True], [2.0, BOX, False]],
            "helmet": [[0.0, BOX, False], [1.0, BOX, True]],  # drawn but hidden, then in view
            "dog#1": [[2.5, BOX, True]],
        },
        meta={"actors": {"cat": "cat", "cat#2": "cat", "helmet": "helmet", "dog#1": "dog"}},
    )
    targets = frame_targets(annotation, times, classes_of(VOCABULARY))
    assert classes_of(VOCABULARY) == CLASSES and targets.shape == (6, 4)
    assert targets[:, 0].tolist() == [1, 1, 0, 1, 1, 1]  # cat, then cat#2 while cat is away, cat again
    assert targets[:, 1].tolist() == [0, 0, 0, 0, 0, 1]  # dog#1 from 2.5 s
    assert targets[:, 2].tolist() == [0, 0, 1, 1, 1, 1]  # the helmet (not a trained noun): generic
    assert targets[:, 3].tolist() == [1, 1, 1, 1, 1, 1]  # some object in view in every frame
    # the helmet alone (1.0 s) sets the generic and the "something" columns; the cat alone
    # (0 s) its noun and "something", not the generic one
    assert targets[2].tolist() == [0, 0, 1, 1] and targets[0].tolist() == [1, 0, 0, 1]
    # with the helmet in the vocabulary it is its own class and nothing is generic
    classes = classes_of(("cat", "dog", "helmet"))
    assert classes[-2:] == (GENERIC_NOUN, ANY_OBJECT)
    assert frame_targets(annotation, times, classes)[:, 2:].tolist() == [[0, 0, 1], [0, 0, 1]] + [[1, 0, 1]] * 4
    # an annotation without tracks (Ego4D, COIN) says nothing is in view
    assert not frame_targets(VideoAnnotation("n", 3.0), times, CLASSES).any()


def test_input_dim_is_the_features_without_the_frame_difference():
    assert input_dim_of(ENC, DIM) == DIM
    assert input_dim_of(ENC + "+delta", DIM) == DIM // 2
    assert input_dim_of("features from elsewhere", DIM) == DIM


@pytest.mark.parametrize("pooling, token", [("max", 0), ("token", 1)])
def test_fit_learns_a_separable_frame_set(pooling, token):
    """Class c is in view when value c of token 1 is +1 (-1 otherwise); token 0 (another grid
    cell) sees none of the objects (-1 there). The last class (ANY_OBJECT) is in view whenever
    one of the others is."""
    g = torch.Generator().manual_seed(0)
    named = (torch.rand(64, 3, generator=g) < 0.4).float()
    targets = torch.cat([named, named.amax(1, keepdim=True)], 1)
    assert 0 < targets[:, 3].sum() < 64  # frames with and without an object
    features = 0.1 * torch.randn(64, 2, 6, generator=g)
    features[:, 0, :4] -= 1
    features[:, 1, :4] += 2 * targets - 1
    frames = FrameSet(features, targets, streams=4)
    settings = EvidenceSettings(classes=CLASSES, input_dim=6, token=token, pooling=pooling)
    head = fit(frames, settings)
    assert isinstance(head, nn.Linear) and head.weight.shape == (4, 6)
    with torch.no_grad():
        predicted = (torch.sigmoid(evidence_logits(head, features, settings)) >= 0.5).float()
    assert torch.equal(predicted, targets)
    text = report(head, frames, settings, "synthetic")
    assert text.startswith("synthetic: 64 frames of 4 streams")
    rows = _rows(text)
    assert set(rows) == set(CLASSES)
    for i, noun in enumerate(CLASSES):
        assert rows[noun] == (int(targets[:, i].sum()), "100%", "100%")
    assert "whole set right: 100.0%; frames naming a class not in view: 0.0%" in text


def test_load_frames_reads_a_split(data, tmp_path):
    train, _ = data
    frames, encoder_id, input_dim = load_frames(train, CLASSES)
    assert (encoder_id, input_dim, frames.streams) == (ENC, DIM, 3)
    assert frames.features.shape == (27, NTOK, DIM) and frames.features.dtype == torch.float32
    assert frames.targets.shape == (27, 4)
    # v0's first frames: the cat alone; v1's first: the helmet (generic); each is "something"
    assert frames.targets[0].tolist() == [1, 0, 0, 1] and frames.targets[9].tolist() == [0, 0, 1, 1]
    # features with frame differences: the first half of each token
    delta = write_split(tmp_path / "delta", TRAIN[:1], encoder_id=ENC + "+delta")
    frames, encoder_id, input_dim = load_frames(delta, CLASSES)
    assert input_dim == DIM // 2 and frames.features.shape == (9, NTOK, DIM // 2)


def test_fit_evidence_writes_a_head_that_load_head_reads(data, tmp_path):
    train, val = data
    lines: list[str] = []
    out = fit_evidence(train, tmp_path / "head.safetensors", VOCABULARY, val_dir=val, log=lines.append)
    assert out == tmp_path / "head.safetensors" and out.is_file()
    settings, state = load_head(out)
    assert settings == EvidenceSettings(classes=CLASSES, input_dim=DIM, token=0, pooling="max")
    assert state["weight"].shape == (4, DIM) and state["bias"].shape == (4,)
    text = "\n".join(lines)
    assert "4 classes on 27 frames" in text and f"held out ({val})" in text and f"evidence head: {out}" in text
    held_out = _rows(text.split("held out")[1])
    # the held-out stream: the cat, the rocket (generic) and the dog, each recognised, and
    # "something" in view throughout
    assert {noun: row[1:] for noun, row in held_out.items()} == {noun: ("100%", "100%") for noun in CLASSES}
    head = nn.Linear(DIM, len(CLASSES))
    head.load_state_dict(state)
    frames, _, _ = load_frames(val, CLASSES)
    with torch.no_grad():
        assert torch.equal(
            (torch.sigmoid(evidence_logits(head, frames.features, settings)) >= 0.5).float(), frames.targets
        )
    # the held-out split must hold features of the same encoder
    other = write_split(tmp_path / "other", VAL, encoder_id=ENC + "+delta")
    with pytest.raises(ValueError, match="holds features of"):
        fit_evidence(train, tmp_path / "x.safetensors", VOCABULARY, val_dir=other, steps=1, log=lines.append)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """make_run's tiny base LLM, streams and config, and a head for its features (DIM wide)."""
    root, path = make_run(tmp_path_factory.mktemp("run"))
    torch.manual_seed(0)
    head = nn.Linear(DIM, len(CLASSES))
    settings = EvidenceSettings(classes=CLASSES, input_dim=DIM)
    return root, path, save_head(head, settings, root / "evidence.safetensors"), settings


def test_model_evidence_puts_the_head_into_the_live_config(run, tmp_path):
    root, path, head, settings = run
    spec = resolve_model(load_config(path, [f"model.evidence={head}", "model.vocabulary=cat,dog"]))
    assert spec.live.evidence == settings and spec.live.vocabulary == VOCABULARY
    assert spec.live.lora.modules_to_save == ("connector", "evidence")
    plain = resolve_model(load_config(path))
    assert plain.live.evidence is None and plain.live.lora.modules_to_save == ("connector",)
    with pytest.raises(ConfigError, match=r"model\.evidence: .*does not exist: fit one with `live-ros fit-evidence"):
        resolve_model(load_config(path, [f"model.evidence={tmp_path / 'nowhere.safetensors'}"]))
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3, DIM)}, str(foreign))
    with pytest.raises(ConfigError, match=r"model\.evidence: .*is not an evidence head"):
        resolve_model(load_config(path, [f"model.evidence={foreign}"]))


def test_build_model_freezes_the_classifier_and_trains_the_names(run, tmp_path):
    root, path, head, settings = run
    config = load_config(path, [f"model.evidence={head}", "model.vocabulary=cat,dog"])
    spec = resolve_model(config)
    peft_model, tokenizer, tokens = build_model(config, spec, "cpu")
    state = load_head(head)[1]
    modules = [m for m in peft_model.modules() if isinstance(m, ObjectEvidence)]
    assert len(modules) == 2  # peft keeps the original beside the copy it trains
    for module in modules:
        assert torch.equal(module.classifier.weight, state["weight"]) and torch.equal(
            module.classifier.bias, state["bias"]
        )
        assert not any(p.requires_grad for p in module.classifier.parameters())
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad and "evidence" in name}
    assert trainable == {"base_model.model.evidence.modules_to_save.default.names"}
    # the names start as the LLM's word embeddings (build_base: init_names); " cat" is one SmolLM2 token
    names = peft_model.get_base_model().evidence.modules_to_save["default"].names
    table = peft_model.get_input_embeddings().weight
    assert torch.equal(names[0], table[tokenizer.convert_tokens_to_ids("Ġcat")])

    # one backward pass: the names get a gradient, the frozen classifier none
    enc = tokens.encode([Turn("stream", num_frames=2), Turn("assistant", "A cat.")])
    frames = torch.randn(2, NTOK, DIM, generator=torch.Generator().manual_seed(0))
    out = peft_model(input_ids=torch.tensor([enc.input_ids]), frame_tokens=frames)
    out.logits.float().pow(2).mean().backward()
    assert names.grad is not None and names.grad.abs().sum() > 0
    assert all(p.grad is None for m in modules for p in m.classifier.parameters())

    # a checkpoint from before the head (no evidence keys) still starts the run: its connector
    # loads, the head and its names stay
    before = {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
    old = {k: v + 0.5 if ".connector." in k else v for k, v in before.items() if ".evidence." not in k}
    (tmp_path / "old").mkdir()
    save_file({k: v.contiguous() for k, v in old.items()}, str(tmp_path / "old" / "adapter_model.safetensors"))
    init_adapter(peft_model, tmp_path / "old")
    after = get_peft_model_state_dict(peft_model)
    for key, value in after.items():
        expected = old[key] if key in old else before[key]
        assert torch.equal(value, expected), key
    assert any(".connector." in k for k in old) and any(".evidence." in k for k in after)


def test_cli_fit_evidence(data, tmp_path, capsys):
    train, val = data
    out = tmp_path / "head.safetensors"
    threads = str(torch.get_num_threads())  # the verb sets torch's threads: keep the fixture's
    argv = ["fit-evidence", str(train), "--out", str(out), "--val", str(val), "--vocabulary", "cat,dog"]
    assert cli.main([*argv, "--threads", threads]) == 0
    printed = capsys.readouterr().out
    assert f"{'class':<24}{'in view':>8}{'recall':>8}{'precision':>10}" in printed
    assert set(_rows(printed)) == set(CLASSES) and f"evidence head: {out}" in printed
    assert load_head(out)[0] == EvidenceSettings(classes=CLASSES, input_dim=DIM, token=0, pooling="max")
    argv = ["fit-evidence", str(train), "--out", str(out), "--vocabulary", "cat", "--pooling", "token"]
    assert cli.main([*argv, "--steps", "5", "--threads", threads]) == 0
    assert load_head(out)[0] == EvidenceSettings(
        classes=("cat", GENERIC_NOUN, ANY_OBJECT), input_dim=DIM, pooling="token"
    )
    capsys.readouterr()

    missing = tmp_path / "nowhere"
    assert cli.main(["fit-evidence", str(missing), "--out", str(tmp_path / "x.safetensors"), "--threads", threads]) == 1
    err = capsys.readouterr().err
    assert err.startswith("live-ros fit-evidence: ") and f"{missing / 'streams.jsonl'} does not exist" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_a_split_without_annotations_is_refused_with_the_fix(tmp_path):
    """fit-evidence learns what is in view from each stream's annotation: a stream that names
    none is a ValueError naming the stream and the generator that writes them."""
    save_samples([StreamSample(video_id="v0", duration=1.0)], tmp_path / "streams.jsonl")
    with pytest.raises(ValueError, match=r"v0 names no annotation.*live-ros generate world"):
        load_frames(tmp_path, classes_of(("cat",)))
