"""``python -m mir_core xmei``: train (LoRA SFT) + evaluate XMEI-Qwen over seeds."""
from __future__ import annotations

import json


def add_parser(sub) -> None:
    x = sub.add_parser(
        "xmei", help="XMEI-Qwen: LoRA SFT of an LLM answering emotion, intent and a reason",
        description="Train + evaluate XMEI-Qwen (issue #13) over seeds; writes "
        "outputs/xmei/<dataset>/<name>/ (config.json, seed_<s>/metrics.json and "
        "predictions.csv, summary.json/.md). A finished seed with the same config is reused.")
    x.add_argument("--dataset", default="IEMOCAP-DA",
                   help="IEMOCAP-DA, or a name for --train-json/--test-json data")
    x.add_argument("--train-json", default=None, help="XMEI-format JSON for training")
    x.add_argument("--test-json", default=None, help="XMEI-format JSON for testing")
    x.add_argument("--preset", default="cpu", help="cpu (default) or xmei (the paper's)")
    x.add_argument("--llm", default=None, help="causal LM (default: the preset's), e.g. "
                   "smollm2-135m-instruct, Qwen/Qwen2.5-7B-Instruct or a folder")
    x.add_argument("--seeds", type=int, nargs="+", default=[0])
    x.add_argument("--n-train", type=int, default=None, help="train samples (random draw)")
    x.add_argument("--n-test", type=int, default=None, help="test samples (random draw)")
    x.add_argument("--split", default="test", help="evaluation split (IEMOCAP-DA)")
    x.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="XMEIConfig overrides, e.g. max_steps=50 lora_r=4 precision=fp32")
    x.add_argument("--unknown-emotion", default="drop", choices=["drop", "mark"])
    x.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    x.add_argument("--name", default=None, help="run folder name (default: from the settings)")
    x.add_argument("--out", default=None, help="root of the run folders (default "
                   "$MIR_OUTPUT_DIR/xmei)")
    x.add_argument("--data-root", default=None)
    x.add_argument("--progress", action="store_true")
    x.add_argument("--checkpoint-every", type=int, default=50, metavar="STEPS",
                   help="optimizer steps between training checkpoints (default 50; 0: none): "
                   "a killed seed resumes from its last one, so a long SFT can span sessions")


def run_cli(a, parse_sets) -> int:
    import torch

    from ..training import ConfigError
    from . import preset
    from .data import from_iemocap, load_xmei_json
    from .run import XMEIRunError, run_xmei
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        overrides = parse_sets(a.set)
        if a.llm:
            overrides["llm"] = a.llm
        cfg = preset(a.preset, **overrides)
    except (KeyError, ValueError, TypeError) as e:
        raise ConfigError(str(e.args[0] if e.args else e)) from None
    if bool(a.train_json) != bool(a.test_json):
        raise ConfigError("--train-json and --test-json go together")
    if a.train_json:
        name = a.dataset if a.dataset != "IEMOCAP-DA" else None
        train = load_xmei_json(a.train_json, "train", name=name)
        test = load_xmei_json(a.test_json, "test", intents=train.intents,
                              emotions=train.emotions, name=train.name)
    else:
        if a.dataset != "IEMOCAP-DA":
            raise ConfigError(f"--dataset {a.dataset!r}: only IEMOCAP-DA has emotion labels "
                              "here; other data go through --train-json/--test-json")
        root = a.data_root
        train = from_iemocap("train", root, cfg.caption_aspects)
        test = from_iemocap(a.split, root, cfg.caption_aspects)
    train = train.subset(a.n_train, seed=0)
    test = test.subset(a.n_test, seed=0)
    feats = {"train_features": None, "test_features": None}
    if cfg.modalities:
        if not a.train_json:
            raise ConfigError(f"preset {a.preset!r} reads modality features {list(cfg.modalities)}"
                              f", and {a.dataset} ships no clips: add --set modalities=() (text + "
                              "captions only) or use XMEI JSON files with video/audio paths")
        from pathlib import Path

        from .features import path_features
        feats = {"train_features": path_features(train, cfg.modalities, Path(a.train_json).parent),
                 "test_features": path_features(test, cfg.modalities, Path(a.test_json).parent)}
    name = a.name or f"{a.preset}-n{len(train)}-t{len(test)}"
    try:
        res = run_xmei(train, test, cfg, seeds=tuple(a.seeds), name=name, out_root=a.out,
                       unknown_emotion=a.unknown_emotion, progress=a.progress,
                       checkpoint_every=a.checkpoint_every, **feats)
    except XMEIRunError as e:
        raise ConfigError(str(e)) from None
    print(json.dumps({"folder": str(res.folder), "intent": res.summary["intent"],
                      "emotion": res.summary["emotion"],
                      "unparsed_share_pct": res.summary["unparsed_share"]}, indent=2))
    return 0
