"""The GPU benchmark's model directory is LLaVA-1.5-7B's, built offline (no weights): checked here
on the meta device, since no GPU runs the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def test_the_gpu_benchmark_builds_llava_15_7b_offline(tmp_path: Path) -> None:
    import torch
    from PIL import Image
    from transformers import AutoConfig, AutoProcessor, LlavaForConditionalGeneration

    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("gpu_vlm", BENCHMARKS / "gpu_vlm.py")
        assert spec is not None and spec.loader is not None
        gpu_vlm = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gpu_vlm)
    finally:
        sys.path.remove(str(BENCHMARKS))
    directory = gpu_vlm.build_llava_15_7b(tmp_path / "llava")
    assert not list(directory.glob("*.safetensors"))  # no weights: vLLM loads dummy ones
    config = AutoConfig.from_pretrained(directory)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration._from_config(config)
    parameters = sum(p.numel() for p in model.parameters())
    assert 7.0e9 < parameters < 7.1e9  # LLaVA-1.5-7B: 7.06 billion
    processor = AutoProcessor.from_pretrained(directory)
    tokenizer = processor.tokenizer
    assert len(tokenizer) == 32002 and config.text_config.vocab_size == 32064
    assert len(tokenizer.encode("Yes", add_special_tokens=False)) == 1
    assert len(tokenizer.encode("No", add_special_tokens=False)) == 1
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it safe?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.new("RGB", (640, 480))], return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 3, 336, 336)
    assert int((inputs["input_ids"] == 32000).sum()) == 576
    assert inputs["input_ids"][0, 0] == tokenizer.bos_token_id == 1
