"""EU DSA statements of reasons (Article 17) in the Transparency Database's form (Article 24(5)):
the statement model, its making from a result, the submission and the transparency-report counts."""

from icm.dsa.made import Made
from icm.dsa.mapping import Case, NoStatement, PersonDecision, SourceType, StatementFacts, statement_for
from icm.dsa.statement import BATCH_LIMIT, Statement

__all__ = [
    "BATCH_LIMIT", "Case", "Made", "NoStatement", "PersonDecision", "SourceType", "Statement", "StatementFacts",
    "statement_for",
]
