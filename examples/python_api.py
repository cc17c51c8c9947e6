"""The Python API: what `icm moderate` does, in a few lines.

    python examples/python_api.py
"""

from pathlib import Path

from icm import Moderator, load_policy

here = Path(__file__).parent
policy = load_policy(here / "policies" / "kids-conservative.yaml")
moderator = Moderator(policy)  # the local engine; Moderator(policy, "transformers:DIR") for a VLM

for result in moderator.stream([here / "images"]):
    print(f"{result.image}: {result.decision}")
    for verdict in result.verdicts:
        print(f"  {verdict.rule_id}: {verdict.verdict} (p={verdict.probability})")
    print(f"  {result.explanation}")

# Streamed, one line per image. resume=True continues the file on a second run (images already
# judged are skipped); without it, a file that already holds results is refused, never truncated.
summary = moderator.run([here / "images"], out=Path("kids-results.jsonl"), resume=True)
print(summary.as_dict())
