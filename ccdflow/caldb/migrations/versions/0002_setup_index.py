"""Index for best(): type, instrument and the equality gates, then observation time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_calibration_setup", "calibration",
                    ["type", "instrument", "detector", "binning", "readout_mode", "raw_shape",
                     "obs_time", "filter"])


def downgrade() -> None:
    op.drop_index("ix_calibration_setup", table_name="calibration")
