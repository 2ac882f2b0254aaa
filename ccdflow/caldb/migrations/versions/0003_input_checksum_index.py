"""Index master inputs by checksum: the nightly ledger asks "is there a master of these inputs?".

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_calibration_input_sha256", "calibration_input", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_calibration_input_sha256", table_name="calibration_input")
