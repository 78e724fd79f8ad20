"""XMEI-Qwen (issue #13): data, prompt/answer format, SFT and runs. The model itself is
:mod:`mir_core.models.xmei_qwen`."""
from ..models.xmei_qwen import PRESETS, LQFormer, XMEIConfig, XMEIQwen, preset
from .data import XData, XSample, count_unknown, from_iemocap, load_xmei_json
from .run import XMEIRun, XMEIRunError, run_dir, run_xmei
from .text import answer_text, parse_answer, reason_of

__all__ = ["PRESETS", "LQFormer", "XMEIConfig", "XMEIQwen", "preset", "XData", "XSample",
           "count_unknown", "from_iemocap", "load_xmei_json", "XMEIRun", "XMEIRunError",
           "run_dir", "run_xmei", "answer_text", "parse_answer", "reason_of"]
