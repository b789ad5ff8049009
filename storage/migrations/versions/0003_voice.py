"""voice: spoken answers and outbound call attempts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 11:45:00

"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel

import storage.models


# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column(
        "complaints",
        sa.Column("callback_at", storage.models.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "rating_recordings",
        sa.Column("rating_id", sa.Integer(), nullable=False),
        sa.Column("field", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("transcription", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["rating_id"], ["ratings.id"]),
        sa.PrimaryKeyConstraint("rating_id", "field"),
    )
    op.create_index(op.f("ix_rating_recordings_url"), "rating_recordings", ["url"], unique=False)
    op.create_table(
        "call_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invitation_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("call_sid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("answered_by", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("scheduled_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["invitation_id"], ["invitations.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("call_sid"),
    )
    op.create_index(
        "ix_call_attempts_due", "call_attempts", ["status", "scheduled_at"], unique=False
    )
    op.create_index(
        op.f("ix_call_attempts_invitation_id"), "call_attempts", ["invitation_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_call_attempts_invitation_id"), table_name="call_attempts")
    op.drop_index("ix_call_attempts_due", table_name="call_attempts")
    op.drop_table("call_attempts")
    op.drop_index(op.f("ix_rating_recordings_url"), table_name="rating_recordings")
    op.drop_table("rating_recordings")
    op.drop_column("complaints", "callback_at")
