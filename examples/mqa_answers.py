"""Answer the MQA questions with a model and write the answers file that `icm eval mqa` scores.

    python examples/mqa_answers.py --questions ICM-Instruct/raw --images ICM-Instruct/images \
        --backend transformers:runs/llava-r1 --out answers.jsonl
    icm eval mqa --questions ICM-Instruct/raw --answers answers.jsonl

--questions is a gold JSONL file or a release folder with qa/ and mc/; --images is the folder the
questions' image names are relative to; --backend is any model backend (transformers:DIR,
openai:MODEL@URL) and --backend-options a YAML file of its keywords, as for `icm moderate`.
Each line written is {"id", "answer"}, the answer as the model wrote it:
`icm eval mqa` reads "Yes.", "B) Happy" and the like.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from icm.backends import load_backend
from icm.backends.base import load_backend_options
from icm.evaluate.mqa import Question, load_questions
from icm.media import load_image


def prompt(question: Question) -> str:
    if question.type == "yesno":
        return f"{question.question}\nAnswer Yes or No."
    return "\n".join([question.question, *question.choices, "Answer with the letter of the right choice."])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", required=True, type=Path)
    parser.add_argument("--images", default=Path("."), type=Path)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--backend-options", type=Path, help="YAML of backend keywords, e.g. max_new_tokens: 16")
    parser.add_argument("--out", default=Path("answers.jsonl"), type=Path)
    args = parser.parse_args()

    options = load_backend_options(args.backend_options) if args.backend_options else {}
    model = load_backend(args.backend, **options)
    with args.out.open("w", encoding="utf-8") as out:
        for question in load_questions(args.questions):
            image = load_image(args.images / question.image)
            answer = model.chat_about(image).chat([("user", prompt(question))]).text
            out.write(json.dumps({"id": question.id, "answer": answer}) + "\n")
    print(f"answers: {args.out}")


if __name__ == "__main__":
    main()
