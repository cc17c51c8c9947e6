"""Instruction samples in the conversational ``messages`` + ``images`` form that TRL takes unchanged.

One Sample is one training conversation about one image (or none, for text-only data):

    {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "..."}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "..."}]}],
     "images": ["images/a.jpg"],
     "meta": {"kind": "explanation", "image_id": "a.jpg", "policy": "icm-r1", "label": "violates", ...}}
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from icm.prompts.moderation import chat_turn


class SampleKind(StrEnum):
    explanation = "explanation"
    verdict = "verdict"
    yes_no = "yes_no"
    what = "what"
    how = "how"
    multiple_choice = "multiple_choice"


class ContentPart(BaseModel):
    type: Literal["text", "image"]
    text: str | None = None


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: list[ContentPart]

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.content if p.type == "text" and p.text)


class SampleMeta(BaseModel):
    kind: SampleKind
    image_id: str = Field(description="Splits are made by image_id, so an image is never in two splits.")
    category: str | None = None
    policy: str | None = None
    policy_version: int | None = None
    rule_id: str | None = None
    label: Literal["violates", "complies"] | None = None
    source: str = "generated"
    split: Literal["train", "validation"] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class Sample(BaseModel):
    messages: list[Message]
    images: list[str] = Field(default_factory=list)
    meta: SampleMeta

    @classmethod
    def single_turn(
        cls, prompt: str, answer: str, meta: SampleMeta, image: str | None = None, system: str | None = None
    ) -> Sample:
        """A user turn (the image first, then the text: :func:`icm.prompts.moderation.chat_turn`, the
        shape the transformers backend asks in) and the assistant's answer."""
        turns = [("system", system)] if system else []
        turns += [("user", prompt), ("assistant", answer)]
        images = 1 if image is not None else 0
        messages = [Message.model_validate(chat_turn(role, text, images if role == "user" else 0))
                    for role, text in turns]
        return cls(messages=messages, images=[image] if image is not None else [], meta=meta)

    def to_record(self) -> dict[str, Any]:
        """The row written to JSONL / Parquet: content parts without null fields, as TRL expects."""
        return {
            "messages": [
                {"role": m.role, "content": [p.model_dump(exclude_none=True) for p in m.content]}
                for m in self.messages
            ],
            "images": list(self.images),
            "meta": self.meta.model_dump(mode="json"),
        }
