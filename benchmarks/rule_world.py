"""A synthetic world where the truth is known exactly, for the rule-following benchmark.

Each image is drawn with Pillow from a :class:`Scene`: up to four shapes (star, circle, square;
red, blue, green) in the top half, a word (or none) in the bottom half, on a dark or a light
background. The scene's visual attributes are criterion ids (:data:`CRITERIA`); rule sets over
them are ordinary icm policies (:func:`rule_sets`), so the true verdict of every image under every
rule is what :func:`icm.policy.categories.policy_labels` computes from the attributes, the same
function the data engine labels its samples with.

Also here: the data engine's two model stages for this world (:class:`WorldExplainer` writes the
explanation from the known scene, :class:`WorldQuestionWriter` the Q-A pairs), and the small
LLaVA the benchmark trains (:func:`save_llava`), its WordLevel vocabulary built from the texts it
will read. Nothing is downloaded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from icm.explanation import ImageExplanation, RuleExplanation
from icm.llm import FunctionChat, Generation, JsonSchema, OutputMode, Turn
from icm.media import DecodedImage
from icm.policy.categories import explicit_description
from icm.policy.schema import Policy

IMAGE_SIZE = 64  # pixels; the vision tower cuts it into 4 x 4 patches of 16 pixels
PATCH = 16
CELL = 16  # a shape's cell: one patch
KINDS = ("star", "circle", "square")
COLOURS = {"red": (215, 40, 40), "blue": (40, 80, 225), "green": (40, 165, 60)}
WORDS = ("CAT", "SUN", "HELLO", "WIN", "OK", "FREE", "MOON", "SALE")
NUMBERS = ("no", "one", "two", "three", "four")

#: criterion id -> its explicit description (the sentence that states what is known)
CRITERIA = {
    "red-shape": "A red shape is shown.",
    "blue-shape": "A blue shape is shown.",
    "star": "A star is shown.",
    "many-stars": "More than two stars are shown.",
    "text": "A word is written on the image.",
    "light-background": "The background is light.",
    "dark-background": "The background is dark.",
}


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    slot: int  # 0..7: two rows of four cells in the top half


@dataclass(frozen=True)
class Scene:
    image_id: str
    dark: bool
    shapes: tuple[Shape, ...]
    word: str | None

    @property
    def stars(self) -> int:
        return sum(s.kind == "star" for s in self.shapes)

    def criteria(self) -> list[str]:
        """The criterion ids that hold for this scene, in :data:`CRITERIA`'s order."""
        holds = {
            "red-shape": any(s.colour == "red" for s in self.shapes),
            "blue-shape": any(s.colour == "blue" for s in self.shapes),
            "star": self.stars > 0,
            "many-stars": self.stars > 2,
            "text": self.word is not None,
            "light-background": not self.dark,
            "dark-background": self.dark,
        }
        return [c for c in CRITERIA if holds[c]]

    @property
    def label(self) -> str:
        """The scene's category for the data engine: its criteria joined (one label per combination)."""
        return "+".join(self.criteria())

    def describe(self) -> str:
        """What the image shows, objectively (the explanation's description)."""
        counts: dict[tuple[str, str], int] = {}
        for s in self.shapes:
            counts[(s.colour, s.kind)] = counts.get((s.colour, s.kind), 0) + 1
        parts = [f"{NUMBERS[n]} {colour} {kind}{'s' if n > 1 else ''}" for (colour, kind), n in sorted(counts.items())]
        background = "dark" if self.dark else "light"
        text = f"A drawing on a {background} background with {len(self.shapes)} shape"
        text += ("s" if len(self.shapes) != 1 else "") + ": " + ", ".join(parts) + "."
        plural = "s" if self.stars != 1 else ""
        text += f" There {'is' if self.stars == 1 else 'are'} {NUMBERS[self.stars]} star{plural}."
        text += f" The word {self.word} is written below the shapes." if self.word else " No word is written on it."
        return text

    def draw(self) -> Any:  # -> PIL.Image.Image
        from PIL import Image, ImageDraw, ImageFont

        rng = random.Random(self.image_id)
        base = rng.randint(15, 55) if self.dark else rng.randint(200, 240)
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (base, base, base + (8 if self.dark else -8)))
        draw = ImageDraw.Draw(image)
        for shape in self.shapes:
            x0, y0 = (shape.slot % 4) * CELL, (shape.slot // 4) * CELL
            colour = tuple(min(255, max(0, v + rng.randint(-20, 20))) for v in COLOURS[shape.colour])
            box = (x0 + 2, y0 + 2, x0 + CELL - 3, y0 + CELL - 3)
            if shape.kind == "circle":
                draw.ellipse(box, fill=colour)
            elif shape.kind == "square":
                draw.rectangle((x0 + 3, y0 + 3, x0 + CELL - 4, y0 + CELL - 4), fill=colour)
            else:
                draw.polygon(_star(x0 + CELL / 2, y0 + CELL / 2, CELL / 2 - 1), fill=colour)
        if self.word:
            ink = (245, 245, 245) if self.dark else (10, 10, 10)
            font = ImageFont.load_default(size=14)
            draw.text((rng.randint(1, 8), 40 + rng.randint(0, 6)), self.word, fill=ink, font=font)
        return image


def _star(cx: float, cy: float, radius: float) -> list[tuple[float, float]]:
    import math

    points = []
    for i in range(10):
        r = radius if i % 2 == 0 else radius * 0.42
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return points


def sample_scene(rng: random.Random, image_id: str) -> Scene:
    """One scene; each attribute about as often present as absent (so every rule sees both verdicts)."""
    stars = rng.choices(range(5), weights=(5, 1.5, 1.5, 2, 2))[0]
    others = rng.randint(0 if stars else 1, 4 - stars)
    kinds = ["star"] * stars + [rng.choice(("circle", "square")) for _ in range(others)]
    red, blue = rng.random() < 0.6, rng.random() < 0.6
    pool = ["green"] + (["red"] if red else []) + (["blue"] if blue else [])
    colours = [rng.choice(pool) for _ in kinds]
    # the colours the scene was drawn to have, each on a shape of its own where there are enough shapes
    wanted = [c for c, on in (("red", red), ("blue", blue)) if on]
    for i, colour in zip(rng.sample(range(len(kinds)), len(kinds)), wanted, strict=False):
        colours[i] = colour
    slots = rng.sample(range(8), len(kinds))
    shapes = tuple(Shape(k, c, s) for k, c, s in zip(kinds, colours, slots, strict=True))
    word = rng.choice(WORDS) if rng.random() < 0.65 else None
    return Scene(image_id=image_id, dark=rng.random() < 0.5, shapes=shapes, word=word)


@dataclass
class World:
    seed: int
    train: list[Scene]
    validation: list[Scene]
    test: list[Scene]

    @property
    def scenes(self) -> list[Scene]:
        return self.train + self.validation + self.test


def make_world(seed: int, train: int, validation: int, test: int) -> World:
    rng = random.Random(seed)
    scenes = [sample_scene(rng, f"img{i:05d}") for i in range(train + validation + test)]
    return World(seed, scenes[:train], scenes[train : train + validation], scenes[train + validation :])


def write_images(scenes: Iterable[Scene], folder: Path) -> dict[str, Path]:
    """Each scene drawn to ``folder/IMAGE_ID.png``; image id -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for scene in scenes:
        path = folder / f"{scene.image_id}.png"
        scene.draw().save(path)
        paths[scene.image_id] = path
    return paths


# --- rule sets ----------------------------------------------------------------------------------


def _rule(rule_id: str, text: str, criteria: Sequence[str], match: str = "any") -> dict[str, Any]:
    return {"id": rule_id, "text": text, "match": match, "severity": "high", "action": "block",
            "criteria": [{"id": c, "description": CRITERIA[c]} for c in criteria]}


#: rule-set name -> (policy name, its rules); the same attributes allowed under one, forbidden under another
RULE_SETS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "kids": ("Shapes world, children", [
        _rule("no-red", "No red shapes.", ["red-shape"]),
        _rule("text-light", "No text unless the background is dark.", ["text", "light-background"], "all"),
        _rule("star-limit", "At most two stars.", ["many-stars"]),
    ]),
    "teens": ("Shapes world, teenagers", [
        _rule("no-blue", "No blue shapes.", ["blue-shape"]),
        _rule("text-dark", "No text on a dark background.", ["text", "dark-background"], "all"),
        _rule("no-stars", "No stars at all.", ["star"]),
    ]),
    "adults": ("Shapes world, adults", [
        _rule("no-text", "No written words.", ["text"]),
        _rule("red-light", "No red shapes on a light background.", ["red-shape", "light-background"], "all"),
        _rule("light-only", "The background must be light.", ["dark-background"]),
    ]),
}
#: held out of training: trained attributes recombined, in words no trained rule used
HELD_OUT: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "newcomers": ("Shapes world, newcomers", [
        _rule("blue-light", "Blue figures are forbidden when the backdrop is pale.",
              ["blue-shape", "light-background"], "all"),
        _rule("few-stars", "Stars may appear only one or two at a time.", ["many-stars"]),
        _rule("red-dark", "Red figures are banned on a dark backdrop.", ["red-shape", "dark-background"], "all"),
    ]),
}
#: what replaces every rule's text (and its criteria) when the rule text is withheld at inference
WITHHELD = "Rule text withheld."


def rule_set(name: str, *, withhold_text: bool = False) -> dict[str, Any]:
    """The policy of one rule set as a YAML-ready mapping; ``withhold_text``: its rules' text and
    criteria replaced by :data:`WITHHELD` (same ids, same policy name)."""
    title, rules = {**RULE_SETS, **HELD_OUT}[name]
    if withhold_text:
        rules = [{**r, "text": WITHHELD, "criteria": [], "match": "any"} for r in rules]
    return {"id": f"shapes-{name}" + ("-withheld" if withhold_text else ""), "version": 1, "name": title,
            "rules": rules}


def write_policies(folder: Path) -> dict[str, Path]:
    """Every rule set (and its withheld-text variant, as NAME-withheld) as a policy YAML file."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in (*RULE_SETS, *HELD_OUT):
        for withheld in (False, True):
            key = name + ("-withheld" if withheld else "")
            path = folder / f"{key}.yaml"
            path.write_text(yaml.safe_dump(rule_set(name, withhold_text=withheld), sort_keys=False), "utf-8")
            paths[key] = path
    return paths


# --- the data engine's model stages for this world ----------------------------------------------


class WorldExplainer:
    """The explain stage's model here: the explanation written from the scene itself.

    The description states the scene's attributes, the implicit content is the label's explicit
    description (the prior), and each rule's conclusion follows the true verdict.
    """

    spec = "world-explainer"

    def __init__(self, scenes: Iterable[Scene], images: dict[str, Path]) -> None:
        import hashlib

        self._by_sha = {hashlib.sha256(images[s.image_id].read_bytes()).hexdigest(): s
                        for s in scenes if s.image_id in images}

    def about(self, image: DecodedImage, policy: Policy, labels: dict[str, bool],
              criteria: tuple[str, ...]) -> FunctionChat:
        scene = self._by_sha[image.sha256]
        entries = []
        for rule in policy.rules:
            met = [c.id for c in rule.criteria if c.id in criteria]
            if labels[rule.id]:
                why = " and ".join(CRITERIA[c].rstrip(".").lower() for c in met)
                conclusion = f"The image violates rule {rule.id} ({rule.text.rstrip('.')}): {why}."
            else:
                conclusion = f"The image complies with rule {rule.id} ({rule.text.rstrip('.')})."
            entries.append(RuleExplanation(rule_id=rule.id, criteria_met=met, violates=labels[rule.id],
                                           conclusion=conclusion))
        answer = ImageExplanation(description=scene.describe(),
                                  implicit_content="A plain synthetic drawing. " + explicit_description(
                                      policy, list(criteria)),
                                  rules=entries).model_dump_json()
        return FunctionChat(lambda turns, schema, max_tokens: Generation(text=answer, tokens=0))


class WorldQuestionWriter:
    """The Q-A stage's model here: yes/no, what, how and multiple-choice questions about the scene
    whose description the explanation holds (the answers are the scene's attributes)."""

    spec = "world-questions"
    name = "world-questions"
    supports_images = False
    output_mode = OutputMode.json_schema

    def __init__(self, scenes: Iterable[Scene]) -> None:
        self._by_description = {s.describe(): s for s in scenes}

    def chat(self, turns: Sequence[Turn], *, schema: JsonSchema | None = None,
             max_tokens: int | None = None) -> Generation:
        return self.complete(turns[-1][1], schema=schema)

    def complete(self, prompt: str, *, schema: JsonSchema | None = None, max_tokens: int = 768) -> Generation:
        scene = next(s for d, s in self._by_description.items() if d in prompt)
        colours = sorted({s.colour for s in scene.shapes})
        yes_no = lambda q, holds: {"type": "yes_no", "question": q, "answer": "Yes" if holds else "No"}  # noqa: E731
        questions = [
            yes_no("Is a red shape shown?", "red" in colours),
            yes_no("Is the background dark?", scene.dark),
            yes_no("Is a word written on the image?", scene.word is not None),
            {"type": "what", "question": "What is written on the image?",
             "answer": f"The word {scene.word}." if scene.word else "No word is written on it."},
            {"type": "what", "question": "What colours are the shapes?",
             "answer": "The shapes are " + " and ".join(colours) + "."},
            {"type": "how", "question": "How many stars are shown?",
             "answer": f"There {'is' if scene.stars == 1 else 'are'} {NUMBERS[scene.stars]} star"
                       f"{'s' if scene.stars != 1 else ''}."},
        ]
        options = ["dark", "light", "striped", "blank"]
        mc = [{"question": "What is the background of the image?",
               "choices": {k: f"a {o} background" for k, o in zip("ABCD", options, strict=True)},
               "answer": "A" if scene.dark else "B"}]
        count = len(scene.shapes)
        numbers = [count, *[n for n in (1, 2, 3, 4, 5) if n != count][:3]]
        random.Random(scene.image_id).shuffle(numbers)
        mc.append({"question": "How many shapes does the image show?",
                   "choices": {k: f"{NUMBERS[n] if n < 5 else 'five'} shapes" for k, n in zip("ABCD", numbers,
                                                                                             strict=True)},
                   "answer": "ABCD"[numbers.index(count)]})
        return Generation(text=json.dumps({"questions": questions, "multiple_choice": mc}), tokens=0)


# --- the model ------------------------------------------------------------------------------------

IMAGE_TOKEN = "<image>"
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", IMAGE_TOKEN]


def vocabulary(texts: Iterable[str]) -> list[str]:
    """The special tokens, then every word (and run of punctuation) of ``texts``, split as the
    tokenizer splits them, in order of appearance."""
    from tokenizers.pre_tokenizers import Whitespace

    split = Whitespace()
    words: dict[str, None] = dict.fromkeys(["USER", ":", "ASSISTANT", "Yes", "No"])
    for text in texts:
        words.update(dict.fromkeys(w for w, _ in split.pre_tokenize_str(text)))
    return SPECIAL + [w for w in words if w not in SPECIAL]


def save_llava(directory: Path, words: list[str], *, seed: int, hidden: int = 96, layers: int = 3,
               vision_hidden: int = 64, vision_layers: int = 2) -> Path:
    """A LLaVA (CLIP vision tower + Llama language model) built from a config, randomly
    initialised, with a WordLevel tokenizer over ``words`` and LLaVA-1.5's chat template.

    The language model sees every output of the vision tower's last layer, its CLS token first
    (``vision_feature_select_strategy: full``): the token :func:`pretrain_vision_tower` teaches
    to hold the whole image's attributes."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    from icm.backends.transformers import LLAVA_CHAT_TEMPLATE

    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>",
                                        extra_special_tokens={"image_token": IMAGE_TOKEN})
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                               vision_feature_select_strategy="full", chat_template=LLAVA_CHAT_TEMPLATE,
                               image_token=IMAGE_TOKEN, num_additional_image_tokens=1)
    config = LlavaConfig(
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                                num_attention_heads=4, num_key_value_heads=4, intermediate_size=hidden * 2,
                                max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
        vision_config=CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=PATCH, hidden_size=vision_hidden,
                                       num_hidden_layers=vision_layers, num_attention_heads=4,
                                       intermediate_size=vision_hidden * 2, projection_dim=vision_hidden),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def pretrain_vision_tower(directory: Path, images: dict[str, Path], scenes: Sequence[Scene],
                          held_out: Sequence[Scene], *, steps: int, seed: int, learning_rate: float = 2e-3,
                          batch_size: int = 32) -> dict[str, float]:
    """The vision tower of the LLaVA in ``directory`` taught the world's attributes, as CLIP was
    taught the web's before LLaVA was built on it: the tower and one linear head per criterion of
    :data:`CRITERIA` read from its CLS token (the last layer's, what the language model is given),
    trained together on ``scenes`` (their files in ``images``, image id -> path: the files the rest
    of the loop reads); the tower is saved back in place, the head thrown away.

    Returns each criterion's accuracy on ``held_out`` (a check that the attributes are there to be
    read, not a score of the method).
    """
    import torch
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(directory)
    model = LlavaForConditionalGeneration.from_pretrained(directory)
    tower = model.model.vision_tower.train()

    def encode(batch: Sequence[Scene]) -> tuple[torch.Tensor, torch.Tensor]:
        drawn = []
        for scene in batch:
            with Image.open(images[scene.image_id]) as image:
                drawn.append(image.convert("RGB"))
        pixels = processor.image_processor(drawn, return_tensors="pt")["pixel_values"]
        truth = torch.tensor([[c in held for c in CRITERIA] for held in (set(s.criteria()) for s in batch)]).float()
        return pixels, truth

    train_pixels, train_truth = encode(scenes)
    test_pixels, test_truth = encode(held_out)
    torch.manual_seed(seed)
    head = torch.nn.Linear(tower.config.hidden_size, len(CRITERIA))
    parameters = [*tower.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps,
                                                   pct_start=0.1)

    def logits(pixels: torch.Tensor) -> torch.Tensor:
        return head(tower(pixel_values=pixels).last_hidden_state[:, 0])

    for _ in range(steps):
        picked = torch.randint(0, len(scenes), (batch_size,))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(train_pixels[picked]), train_truth[picked])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    tower.eval()
    with torch.no_grad():
        right = ((logits(test_pixels) > 0).float() == test_truth).float().mean(0)
    model.save_pretrained(directory)
    return {criterion: round(float(r), 3) for criterion, r in zip(CRITERIA, right, strict=True)}
