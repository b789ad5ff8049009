"""rollups: an index by kind and day

A year of totals by day read every kind's day rows of the year (3 M index entries at 1 M ratings)
to keep the 365 of kind ``all``; the index makes it a range of its own.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_result_counts_kind_day", "result_counts", ["kind", "grain", "day"])
    op.create_index("ix_result_dimensions_kind_day", "result_dimensions", ["kind", "grain", "day"])


def downgrade() -> None:
    op.drop_index("ix_result_dimensions_kind_day", table_name="result_dimensions")
    op.drop_index("ix_result_counts_kind_day", table_name="result_counts")
