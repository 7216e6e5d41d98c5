"""The object evidence head (live_ros/model/evidence.py) in the live model
(live_ros/model/live_model.py): the probability-weighted class names are added to one token
of each frame's projection and nowhere else, the classifier pools over the frame's tokens
(max) or reads one token, the names start as the LLM's word embeddings, the head travels
through a peft checkpoint (live_ros/model/checkpoint.py) and its own head file
(save_head / load_head), on tiny real models with the real SmolLM2 tokenizer."""

from __future__ import annotations

import pytest
import torch
from model_helpers import smollm2_tokenizer, tiny_model
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from live_ros.data.generic import GENERIC_NOUN
from live_ros.model.checkpoint import add_lora, load_adapter, save_checkpoint
from live_ros.model.config import ConfigError, EncoderSettings, EvidenceSettings, LiveConfig, LoraSettings
from live_ros.model.evidence import HEAD_FORMAT, ObjectEvidence, evidence_logits, load_head, save_head
from live_ros.model.format import FormatSpec, Turn
from live_ros.model.live_model import LiveLlamaConfig

VISION_DIM, NUM_TOKENS, INPUT_DIM = 16, 3, 8  # 3 tokens per frame; the head reads the first half of each token
CLASSES = ("cat", "dog", GENERIC_NOUN)


def evidence_model(tokenizer, evidence: EvidenceSettings | None, seed: int = 0):
    """model_helpers.tiny_model with 3 tokens per frame and the evidence head ``evidence``."""
    model, tokens = tiny_model(tokenizer, VISION_DIM, NUM_TOKENS, seed, evidence=evidence)
    return model.eval(), tokens


def settings(**kw) -> EvidenceSettings:
    return EvidenceSettings(**{"classes": CLASSES, "input_dim": INPUT_DIM, "token": 1, **kw})


def frames(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, NUM_TOKENS, VISION_DIM, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tok():
    return smollm2_tokenizer()


def test_the_evidence_goes_into_its_token_only(tok):
    model, _ = evidence_model(tok, settings())
    plain, _ = evidence_model(tok, None)
    assert isinstance(model.evidence, ObjectEvidence) and plain.evidence is None
    x = frames()
    with torch.no_grad():
        projected = model.project_frames(x)
        connector = model.connector(x)
        evidence = model.evidence.probabilities(x) @ model.evidence.names
        without = plain.project_frames(x)
    assert projected.shape == (4, NUM_TOKENS, 64)
    # the other tokens are the connector's output untouched (the same ops on the same values: exact)
    assert torch.equal(projected[:, [0, 2]], connector[:, [0, 2]])
    # token 1 = connector + probabilities @ names; float32 default tolerances absorb only the
    # order of the additions (the values are O(1))
    torch.testing.assert_close(projected[:, 1], connector[:, 1] + evidence)
    assert evidence.abs().max() > 1e-3  # the names are word embeddings, the sum is not zero
    # reset_connector seeds its own generator: the model without the head has the same connector,
    # and its projections are the connector's alone
    assert torch.equal(without, connector)
    assert torch.equal(model.evidence(x), evidence)


def test_the_model_config_carries_the_evidence_settings(tok):
    model, _ = evidence_model(tok, settings(pooling="token"))
    assert model.config.live_config.evidence == settings(pooling="token")
    assert model.config.live["evidence"]["classes"] == list(CLASSES)  # transformers serialises the dict
    again = LiveLlamaConfig.from_dict(model.config.to_dict())
    assert again.live_config.evidence == settings(pooling="token") and model.evidence_token == 1


def test_the_evidence_enters_the_embedded_sequence(tok):
    model, tokens = evidence_model(tok, settings())
    enc = tokens.encode([Turn("stream", num_frames=2), Turn("assistant", "a cat")])
    ids, x = torch.tensor([enc.input_ids]), frames(2)
    with torch.no_grad():
        embeds = model.embed(ids, x)
        slots = (ids[0] == tokens.frame_token_id).nonzero().flatten()
        torch.testing.assert_close(embeds[0, slots], model.project_frames(x).reshape(2 * NUM_TOKENS, -1))
        assert model(input_ids=ids, frame_tokens=x).logits.shape[:2] == ids.shape


def test_max_pooling_is_the_max_of_the_tokens_logits(tok):
    model, _ = evidence_model(tok, settings(pooling="max"))
    head, x = model.evidence.classifier, frames()
    with torch.no_grad():
        per_token = torch.stack([head(x[:, n, :INPUT_DIM]) for n in range(NUM_TOKENS)], dim=1)
        logits = model.evidence.logits(x)
        # values past input_dim (the frame difference of a "+delta" encoder) are not read
        other = x.clone()
        other[..., INPUT_DIM:] = torch.randn(4, NUM_TOKENS, VISION_DIM - INPUT_DIM)
        assert torch.equal(model.evidence.logits(other), logits)
    assert logits.shape == (4, len(CLASSES))
    # the same Linear on the same rows, then a max: float32 default tolerance for the batched matmul
    torch.testing.assert_close(logits, per_token.amax(dim=1))
    torch.testing.assert_close(model.evidence.probabilities(x), torch.sigmoid(logits))
    assert torch.equal(evidence_logits(head, x, model.evidence.settings), logits)


def test_token_pooling_reads_that_token_only(tok):
    model, _ = evidence_model(tok, settings(pooling="token", token=2))
    head, x = model.evidence.classifier, frames()
    with torch.no_grad():
        logits = model.evidence.logits(x)
        torch.testing.assert_close(logits, head(x[:, 2, :INPUT_DIM]))  # the same Linear on the same rows
        other = x.clone()
        other[:, :2] = torch.randn(4, 2, VISION_DIM)  # the tokens the head does not read
        assert torch.equal(model.evidence.logits(other), logits)
        other = x.clone()
        other[:, 2, :INPUT_DIM] += 1.0
        assert not torch.equal(model.evidence.logits(other), logits)
        # and the evidence is added to token 2
        projected, connector = model.project_frames(x), model.connector(x)
    assert torch.equal(projected[:, :2], connector[:, :2]) and not torch.equal(projected[:, 2], connector[:, 2])


def test_init_names_are_the_mean_word_embeddings(tok):
    model, _ = evidence_model(tok, settings())
    table = model.get_input_embeddings().weight
    names = model.evidence.names
    # SmolLM2's BPE: " cat" and " dog" are one token each, the generic noun several
    for row, noun in enumerate(CLASSES):
        ids = tok.convert_tokens_to_ids(tok.tokenize(" " + noun))
        assert (len(ids) == 1) == (noun != GENERIC_NOUN)
        # a mean of the same float32 rows: default float32 tolerance for the summation order
        torch.testing.assert_close(names[row], table[ids].mean(0))
    assert torch.equal(names[0], table[tok.convert_tokens_to_ids("Ġcat")])


def test_the_head_travels_through_a_peft_checkpoint(tok, tmp_path):
    live_settings = settings()
    model, _ = evidence_model(tok, live_settings, seed=0)
    lora = LoraSettings(r=4, alpha=8, dropout=0.0, modules_to_save=("connector", "evidence"))
    peft_model = add_lora(model, lora)
    for p in peft_model.parameters():  # trained weights: LoRA B, connector and evidence away from their init
        if p.requires_grad:
            with torch.no_grad():
                p.add_(torch.randn_like(p) * 0.05)
    saved = {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
    assert {"base_model.model.evidence.classifier.weight", "base_model.model.evidence.names"} <= set(saved)
    live = LiveConfig(
        encoder=EncoderSettings(num_tokens=NUM_TOKENS),
        vision_hidden_size=VISION_DIM,
        format=FormatSpec(frame_num_tokens=NUM_TOKENS),
        lora=lora,
        evidence=live_settings,
    )
    folder = save_checkpoint(peft_model, tok, tmp_path / "ckpt", live)  # fp16, the default
    assert LiveConfig.from_pretrained(folder).evidence == live_settings

    fresh, _ = evidence_model(tok, live_settings, seed=1)
    x = frames()
    with torch.no_grad():
        before = fresh.project_frames(x)
    loaded, report = load_adapter(fresh, folder)
    assert report.missing == [] and report.unexpected == []
    state = get_peft_model_state_dict(loaded)
    for key in ("base_model.model.evidence.classifier.weight", "base_model.model.evidence.names"):
        # stored as fp16: round to nearest keeps 11 significant bits, so the relative error is
        # at most 2**-11; atol 2**-25 covers values in fp16's subnormal range (spacing 2**-24)
        torch.testing.assert_close(state[key], saved[key], rtol=2**-11, atol=2**-25)
        assert torch.equal(state[key], saved[key].half().float())  # exactly the fp16 values
    # the projections equal those of the saved model with its weights rounded to fp16 (the same
    # weights and ops: float32 default tolerance)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.copy_(p.half().float())
        expected = peft_model.get_base_model().project_frames(x)
        got = loaded.get_base_model().project_frames(x)
        torch.testing.assert_close(got, expected)
        assert not torch.allclose(before, got, atol=1e-3)  # the load changed the fresh model's projections
        merged = loaded.merge_and_unload()  # inference merges: the trained copy of the head stays
        assert isinstance(merged.evidence, ObjectEvidence)
        torch.testing.assert_close(merged.project_frames(x), expected)


def test_a_model_without_evidence_saves_no_evidence_keys(tok, tmp_path):
    model, _ = tiny_model(tok)
    assert model.evidence is None and model.config.live_config.evidence is None
    peft_model = add_lora(model, LoraSettings(r=4, alpha=8, dropout=0.0))
    assert not any(".evidence." in k for k in get_peft_model_state_dict(peft_model))


def test_save_head_and_load_head_round_trip(tmp_path):
    head_settings = EvidenceSettings(classes=CLASSES, input_dim=INPUT_DIM, token=0, pooling="token")
    torch.manual_seed(0)
    head = nn.Linear(INPUT_DIM, len(CLASSES))
    path = save_head(head, head_settings, tmp_path / "heads" / "evidence.safetensors", report="a report")
    assert path.is_file()
    loaded_settings, state = load_head(path)
    assert loaded_settings == head_settings
    assert set(state) == {"weight", "bias"}
    assert torch.equal(state["weight"], head.weight.detach()) and torch.equal(state["bias"], head.bias.detach())
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == HEAD_FORMAT and meta["report"] == "a report"
    again = nn.Linear(INPUT_DIM, len(CLASSES))
    again.load_state_dict(state)  # the state is a Linear's
    x = torch.randn(5, INPUT_DIM)
    assert torch.equal(again(x), head(x))


def test_load_head_refuses_a_missing_or_foreign_file_with_the_fix(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(ConfigError, match=r"does not exist: fit one with `live-ros fit-evidence DATA/train --out"):
        load_head(missing)
    foreign = tmp_path / "weights.safetensors"  # a safetensors file of something else
    save_file({"weight": torch.zeros(2, 2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"is not an evidence head.*live-ros fit-evidence"):
        load_head(foreign)
    bare = tmp_path / "bare.safetensors"  # no metadata at all
    save_file({"weight": torch.zeros(2, 2)}, str(bare))
    with pytest.raises(ConfigError, match=r"is not an evidence head.*live-ros fit-evidence"):
        load_head(bare)


def test_load_head_refuses_a_file_that_is_not_safetensors(tmp_path):
    text = tmp_path / "evidence.json"
    text.write_text("{}\n")
    with pytest.raises(ConfigError, match="live-ros fit-evidence"):
        load_head(text)
