"""XMEI-Qwen model: LQ-Former shapes and masks, placeholder replacement, answer-only loss
labels, a tiny SFT run that lowers the loss, generation, and the registry entry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mir_core.models import get_method, methods
from mir_core.models.xmei_qwen import LQFormer, XMEIQwen, preset
from mir_core.xmei import sft
from mir_core.xmei.data import XData, XSample
from xmei_tiny import tiny_pair

torch.set_num_threads(1)


def _cfg(**kw):
    base = dict(modalities=("video",), lq_hidden=16, lq_heads=2, lora_r=4, lora_alpha=8,
                batch_size=4, precision="fp32", max_new_tokens=8, lq_dropout=0.0,
                lora_dropout=0.0)
    base.update(kw)
    return preset("cpu", **base)


def _data(n=8):
    s = [XSample(f"k{i}", "he shouts loud" if i % 2 else "hello how are you",
                 "Question" if i % 2 else "Greeting", "angry" if i % 2 else "happy",
                 {"video": "he shouts" if i % 2 else "she smiles"}, "because loud voice")
         for i in range(n)]
    return XData("toy", "train", s, ("Greeting", "Question"), ("angry", "happy"))


def _feats(n=8, s=5, d=7, valid=3):
    rng = np.random.default_rng(0)
    m = np.zeros((n, s), bool)
    m[:, :valid] = True
    return {"video": (rng.standard_normal((n, s, d)).astype(np.float32), m)}


def test_lq_former_shapes_and_padded_positions_get_zero_attention():
    torch.manual_seed(0)
    cfg = _cfg()
    lq = LQFormer(feat_dim=7, llm_dim=12, cfg=cfg).eval()
    B, S = 3, 6
    feats = torch.randn(B, S, 7)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[0, 4:] = False                       # sample 0: two padded positions
    mask[2] = False                           # sample 2: no features at all
    cap = torch.randn(B, cfg.caption_queries, 12)
    cmask = torch.ones(B, cfg.caption_queries, dtype=torch.bool)
    cmask[1, 5:] = False
    out = lq(cap, cmask, feats, mask)
    assert out.queries.shape == (B, cfg.num_queries, 12)                       # (B, Q, D_llm)
    assert len(out.cross_attention) == cfg.lq_layers
    for w in out.cross_attention:
        assert w.shape == (B, cfg.num_queries, S)
        assert torch.all(w[0, :, 4:] == 0)                                     # padded -> 0
        assert torch.allclose(w[0].sum(-1), torch.ones(cfg.num_queries), atol=1e-5)
        assert torch.all(w[2] == 0)                                            # empty clip
    assert torch.isfinite(out.queries).all()
    # changing a padded feature changes nothing
    feats2 = feats.clone()
    feats2[0, 4:] = 100.0
    assert torch.allclose(lq(cap, cmask, feats2, mask).queries[0], out.queries[0], atol=1e-5)


def test_placeholders_are_replaced_by_the_lq_former_outputs_and_text_is_kept():
    cfg = _cfg()
    data = _data(2)
    tok, lm = tiny_pair([s.text for s in data.samples])
    model = XMEIQwen(cfg, lm, {"video": 7}).eval()
    items = sft.encode_all(tok, data, cfg, with_answer=True, features=_feats(2))
    for e in items:
        assert sum(1 for s in e.slots if s == 0) == cfg.num_queries
    batch = sft.collate(items, tok.pad_token_id, ("video",), n_caption=cfg.caption_queries)
    emb, attn = model.input_embeddings(batch)
    plain = model.embed(batch["input_ids"])
    where = batch["slots"] == 0
    assert torch.equal(emb[~where], plain[~where])
    b = model.lq["video"](model.embed(batch["video_caption_ids"]), batch["video_caption_mask"],
                          batch["video_feats"], batch["video_mask"]).queries
    assert torch.allclose(emb[where], b.reshape(-1, b.shape[-1]), atol=1e-6)
    assert attn["video"][0].shape == (2, cfg.num_queries, 5)


def test_labels_are_minus_100_exactly_on_the_prompt():
    cfg = _cfg(modalities=())
    data = _data(3)
    tok, _ = tiny_pair([s.text for s in data.samples])
    for e in sft.encode_all(tok, data, cfg, with_answer=True):
        assert all(v == -100 for v in e.labels[:e.n_prompt])
        assert e.labels[e.n_prompt:] == e.input_ids[e.n_prompt:]
        assert all(v != -100 for v in e.labels[e.n_prompt:])
        assert e.input_ids[-1] == tok.eos_token_id
        answer = tok.decode(e.input_ids[e.n_prompt:], skip_special_tokens=True)
        assert answer.startswith("the user") and "intent is" in answer
    batch = sft.collate(sft.encode_all(tok, data, cfg, with_answer=True), tok.pad_token_id)
    assert torch.all(batch["labels"][batch["attention_mask"] == 0] == -100)
    prompt_only = sft.encode_all(tok, data, cfg, with_answer=False)
    assert all(set(e.labels) == {-100} for e in prompt_only)


def test_tiny_sft_lowers_the_loss_and_generates():
    cfg = _cfg(max_steps=30, lr=2e-2)
    data = _data(8)
    tok, lm = tiny_pair([s.text for s in data.samples])
    model = XMEIQwen(cfg, lm, {"video": 7})
    n_lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n and p.requires_grad)
    base_frozen = all(not p.requires_grad for n, p in model.lm.named_parameters()
                      if "lora_" not in n)
    assert n_lora > 0 and base_frozen
    items = sft.encode_all(tok, data, cfg, with_answer=True, features=_feats())
    batch = sft.collate(items, tok.pad_token_id, ("video",), n_caption=cfg.caption_queries)
    model.eval()
    with torch.no_grad():
        before = float(model(batch).loss)
        full = model(batch, return_logits=True)          # the trimmed logits give the same loss
        logits = full.logits[:, :-1].float()
        ref = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                batch["labels"][:, 1:].reshape(-1))
    assert abs(before - float(ref)) < 1e-4
    stats = sft.train(model, items, cfg, pad_id=tok.pad_token_id, progress=False)
    with torch.no_grad():
        after = float(model(batch).loss)
    assert stats.steps == 30 and after < before - 0.3
    assert stats.tokens_per_s > 0 and stats.answer_tokens > 0
    te = sft.encode_all(tok, data, cfg, with_answer=False, features=_feats())
    answers, _ = sft.generate(model, tok, te[:3], cfg, progress=False)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    att = sft.cross_attention(model, te[0], "video", tok.pad_token_id, cfg)
    assert att.shape == (cfg.lq_layers, cfg.num_queries, 5) and np.all(att[:, :, 3:] == 0)


def test_registry_entry_is_generative_and_leaves_the_classifiers_alone():
    m = get_method("xmei_qwen")
    assert m.kind == "generative" and m.regimes == ()
    assert "xmei_qwen" in methods() and "xmei_qwen" not in methods("classifier")
    for name in ("lgsrr", "text", "amess"):
        assert get_method(name).kind == "classifier" and name in methods("classifier")
    with pytest.raises(TypeError, match="generative"):
        m.build(None)


def test_config_is_frozen_and_presets_differ():
    cfg = preset("cpu")
    with pytest.raises(Exception):
        cfg.lora_r = 3
    assert preset("xmei").lora_r == 64 and preset("xmei").lora_alpha == 32
    assert preset("xmei").lora_dropout == 0.05 and cfg.lora_r < 64
    assert cfg.with_(lora_r=4).lora_r == 4 and cfg.lora_r == 8
    with pytest.raises(ValueError, match="no field"):
        cfg.with_(nope=1)


def test_lq_attention_map_is_a_pure_figure():
    from mir_core.plots import lq_attention_map
    w = np.zeros((4, 3))
    w[:, :2] = 0.5
    fig = lq_attention_map(w, ["she", "smiles"], n_learnable=2, feature_mask=[1, 1, 0])
    hm = fig.data[0]
    assert np.allclose(np.asarray(hm.z), w)
    assert list(fig.layout.yaxis.ticktext)[:3] == ["c0:she", "c1:smiles", "q1"] or \
        "c0:she" in str(fig.layout.yaxis)
    assert "(pad)" in str(fig.layout.xaxis)


def test_a_killed_sft_resumes_from_its_checkpoint_to_the_uninterrupted_result(tmp_path,
                                                                           monkeypatch):
    """Checkpoint every 2 steps, die in step 3, resume: the same losses and trainable
    parameters as 5 uninterrupted steps (LoRA dropout on, so the RNG state must travel)."""
    cfg = _cfg(max_steps=5, lr=1e-2, batch_size=3, lora_dropout=0.1, lq_dropout=0.1)
    data = _data(8)
    texts = [s.text for s in data.samples]
    tok, _ = tiny_pair(texts)
    items = sft.encode_all(tok, data, cfg, with_answer=True, features=_feats())

    def fresh():
        torch.manual_seed(0)
        _, lm = tiny_pair(texts)
        return XMEIQwen(cfg, lm, {"video": 7})

    def trainable(model):
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    ref_model = fresh()
    ref = sft.train(ref_model, items, cfg, pad_id=tok.pad_token_id, seed=3, progress=False)
    ckpt = tmp_path / "seed_3" / "train_checkpoint.pt"
    real_collate, calls = sft.collate, []

    def dying_collate(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed in step 3")
        return real_collate(*a, **k)
    monkeypatch.setattr(sft, "collate", dying_collate)
    with pytest.raises(KeyboardInterrupt):
        sft.train(fresh(), items, cfg, pad_id=tok.pad_token_id, seed=3, progress=False,
                  checkpoint=ckpt, checkpoint_every=2, checkpoint_key="run:seed3")
    assert ckpt.exists() and not ckpt.with_name(ckpt.name + ".tmp").exists()
    monkeypatch.setattr(sft, "collate", real_collate)
    logs = []
    model = fresh()
    out = sft.train(model, items, cfg, pad_id=tok.pad_token_id, seed=3, progress=False,
                    checkpoint=ckpt, checkpoint_every=2, checkpoint_key="run:seed3",
                    log=logs.append)
    assert out.resumed_at_step == 2 and any("at step 2" in line for line in logs)
    assert out.steps == ref.steps == 5 and out.train_tokens == ref.train_tokens
    np.testing.assert_allclose(out.losses, ref.losses, rtol=1e-5)
    want = trainable(ref_model)
    for name, p in trainable(model).items():
        torch.testing.assert_close(p, want[name], rtol=1e-5, atol=1e-6, msg=name)
    # another configuration's checkpoint is named and not resumed
    logs.clear()
    again = sft.train(fresh(), items, cfg, pad_id=tok.pad_token_id, seed=3, progress=False,
                      checkpoint=ckpt, checkpoint_every=2, checkpoint_key="other:seed3",
                      log=logs.append)
    assert again.resumed_at_step == 0 and any("another configuration" in l for l in logs)
