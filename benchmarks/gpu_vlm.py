"""Images/s of LLaVA-1.5-7B's architecture judging K = 1, 4, 16 rules, through the transformers
backend and the vllm backend, built offline with random weights (the shapes decide the speed).

    python benchmarks/gpu_vlm.py                                  # on a GPU: both backends, bf16
    python benchmarks/gpu_vlm.py --vllm-python /opt/vllm/bin/python   # vllm from its own environment
    python benchmarks/gpu_vlm.py --tiny                           # the test-size LLaVA on the CPU
    python benchmarks/gpu_vlm.py ... --json

The model directory is written once: LLaVA-1.5-7B's config (llava-hf/llava-1.5-7b-hf: Llama-2-7B,
CLIP ViT-L/14 at 336 px, 576 image tokens, vocabulary 32064), a word-level tokenizer padded to the
real vocabulary (32002 tokens: 32000, <image>, <pad>) in which Yes and No are single tokens, the
processor config and the chat template; no weights. Each backend runs in its own process (vLLM
pins a torch and transformers that the hf extra cannot share, so ``--vllm-python`` names the
interpreter of a vllm environment): transformers builds the model from the config with random
weights in bf16; vLLM loads it with ``load_format="dummy"`` (random weights) and prefix caching
on. The images of a round are judged in one ``judge_batch`` call, scoring only (explain=none).
Prompts are tokenised word by word, so they are somewhat shorter than Llama's SentencePiece makes
them; the 576 image tokens dominate either way.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny model builder and vocabulary the tests use

LLAVA_15_7B: dict[str, Any] = {
    "architectures": ["LlavaForConditionalGeneration"],
    "model_type": "llava",
    "ignore_index": -100,
    "image_token_index": 32000,
    "image_seq_length": 576,
    "pad_token_id": 32001,
    "projector_hidden_act": "gelu",
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "text_config": {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32064,
        "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "hidden_act": "silu", "torch_dtype": "float16",
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 32001,
    },
    "vision_config": {
        "model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096,
        "image_size": 336, "patch_size": 14, "num_attention_heads": 16, "num_hidden_layers": 24,
        "projection_dim": 768, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05,
    },
}
REAL_VOCABULARY = 32000  # Llama-2's; <image> and <pad> come after it


def build_llava_15_7b(directory: Path) -> Path:
    """LLaVA-1.5-7B's model directory without weights (config, tokenizer, processor, chat template)."""
    from backends.tiny_vlm import _vocabulary
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPImageProcessorPil, LlavaProcessor, PreTrainedTokenizerFast

    from icm.backends.transformers import LLAVA_CHAT_TEMPLATE

    words = [w for w in _vocabulary() if w not in ("<pad>", "<image>")]  # <unk>, <s>, </s> first
    words += [f"<filler-{i}>" for i in range(REAL_VOCABULARY - len(words))]
    vocab = {w: i for i, w in enumerate(words)} | {"<image>": 32000, "<pad>": 32001}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    # Like Llama's tokenizer, BOS is added in front of every text encoded with special tokens.
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                          special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"},
    )
    assert len(tokenizer) == 32002 and tokenizer.convert_tokens_to_ids("<image>") == 32000
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
            image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
        ),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default",
        chat_template=LLAVA_CHAT_TEMPLATE, image_token="<image>", num_additional_image_tokens=1,
    )
    directory.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(directory)
    (directory / "config.json").write_text(json.dumps(LLAVA_15_7B, indent=2))
    return directory


def build_tiny(directory: Path) -> Path:
    """The tests' tiny LLaVA (weights included: it is small)."""
    from backends.tiny_vlm import save_tiny_llava

    return save_tiny_llava(directory)


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.machine()}, {platform.processor() or 'unknown'})"


def random_transformers_backend(model_dir: Path, device: str, **options: Any) -> Any:
    """The transformers backend on the directory's config with random weights (nothing to load)."""
    import torch
    from transformers import AutoConfig, AutoProcessor, LlavaForConditionalGeneration

    from icm.backends.transformers import TransformersBackend

    class RandomWeights(TransformersBackend):
        def _load(self) -> tuple[Any, Any]:
            config = AutoConfig.from_pretrained(self.model_path)
            with torch.device(self.device):
                model = LlavaForConditionalGeneration._from_config(config, dtype=self.dtype)
            return model.eval(), AutoProcessor.from_pretrained(self.model_path)

    return RandomWeights(str(model_dir), device=device, **options)


def measure(backend_name: str, model_dir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """images/s at each K for one backend (run in a process of its own)."""
    from vlm_scoring import policy_with

    from icm.media import load_image

    examples = sorted((ROOT / "examples" / "images").glob("*.jpg"))
    images = [load_image(examples[i % len(examples)]) for i in range(args.images)]
    device = "cpu" if args.tiny else "cuda"
    if backend_name == "transformers":
        dtype = "float32" if args.tiny else "bfloat16"
        backend = random_transformers_backend(model_dir, device, explain="none", dtype=dtype,
                                              image_batch=args.image_batch)
    else:
        from icm.backends.vllm_engine import VLLMBackend

        backend = VLLMBackend(str(model_dir), explain="none", dtype="bfloat16", load_format="dummy",
                              enforce_eager=True, max_model_len=4096, gpu_memory_utilization=0.85)
    rows = []
    for k in (int(v) for v in args.rules.split(",")):
        policy = policy_with(k)
        backend.prepare(policy)
        backend.judge_batch(images[:2], policy)  # warm-up
        start = time.perf_counter()
        for _ in range(args.rounds):
            for outcome in backend.judge_batch(images, policy):
                if isinstance(outcome, Exception):
                    raise outcome
        if device == "cuda":
            import torch

            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        n = args.images * args.rounds
        rows.append({"backend": backend_name, "K": k, "images_per_s": round(n / seconds, 2),
                     "rules_per_s": round(n * k / seconds, 1), "device": device_name(device)})
    backend.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the test-size LLaVA on the CPU (checks the script)")
    parser.add_argument("--images", type=int, default=64, help="images per round, judged in one batch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rules", default="1,4,16", help="the K values, comma-separated")
    parser.add_argument("--image-batch", type=int, default=16, help="transformers: images per forward")
    parser.add_argument("--backends", default="transformers,vllm")
    parser.add_argument("--vllm-python", default=sys.executable, help="the interpreter of an environment with vllm")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: measure one backend on --dir
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(measure(args.run, Path(args.dir), args)))
        return

    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = (build_tiny if args.tiny else build_llava_15_7b)(Path(tmp) / "llava")
        for name in args.backends.split(","):
            python = args.vllm_python if name == "vllm" else sys.executable
            if name == "vllm":
                has_vllm = subprocess.run([python, "-c", "import vllm"], capture_output=True).returncode == 0
                if not has_vllm:
                    skipped[name] = f"vllm does not import in {python} (give --vllm-python)"
                    continue
            forwarded = ["--images", str(args.images), "--rounds", str(args.rounds), "--rules", args.rules,
                         "--image-batch", str(args.image_batch), *(["--tiny"] if args.tiny else [])]
            child = subprocess.run(
                [python, __file__, "--run", name, "--dir", str(model_dir), *forwarded],
                capture_output=True, text=True, env=None,
            )
            if child.returncode != 0:
                last = child.stderr.strip().splitlines()[-1] if child.stderr.strip() else f"exit {child.returncode}"
                skipped[name] = f"failed: {last}"
                print(child.stderr, file=sys.stderr)
                continue
            rows += json.loads(child.stdout.strip().splitlines()[-1])
    report = {"model": "tiny LLaVA (tests)" if args.tiny else "LLaVA-1.5-7B architecture, random weights, bf16",
              "images": args.images, "rounds": args.rounds, "results": rows, "skipped": skipped,
              "seconds": round(time.perf_counter() - started, 1)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    devices = sorted({r["device"] for r in rows}) or ["-"]
    print(f"# {report['model']}; device: {', '.join(devices)}; {args.images} images x {args.rounds} rounds; "
          f"{report['seconds']} s in all")
    print("| backend | K rules | images/s | rules/s |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['K']} | {r['images_per_s']} | {r['rules_per_s']} |")
    for name, why in skipped.items():
        print(f"| {name} | - | not run: {why} | |")


if __name__ == "__main__":
    main()
