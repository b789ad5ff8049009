"""ratings.expires_at is the worker's next look at an unfinished rating: ratings.next_look_at

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 18:00:00

"""

from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Rename the column and its index, keeping every row's value."""
    _rename(
        ("expires_at", "ix_ratings_status_expires"),
        ("next_look_at", "ix_ratings_status_next_look"),
    )


def downgrade() -> None:
    _rename(
        ("next_look_at", "ix_ratings_status_next_look"),
        ("expires_at", "ix_ratings_status_expires"),
    )


def _rename(old: tuple[str, str], new: tuple[str, str]) -> None:
    (column, index), (new_column, new_index) = old, new
    if op.get_bind().dialect.name == "sqlite":
        # SQLite alters a table by copying it, rows and all; the index is made anew on the copy
        # (after it: inside the batch the column still answers to its old name).
        with op.batch_alter_table("ratings", schema=None) as batch_op:
            batch_op.drop_index(index)
            batch_op.alter_column(column, new_column_name=new_column)
        op.create_index(new_index, "ratings", ["status", new_column], unique=False)
    else:
        # PostgreSQL renames in place: the index follows the column and keeps its data, so a
        # large table is not locked while an index is built again.
        op.alter_column("ratings", column, new_column_name=new_column)
        op.execute(f"ALTER INDEX {index} RENAME TO {new_index}")
