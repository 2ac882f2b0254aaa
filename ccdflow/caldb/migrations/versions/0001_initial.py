"""Initial caldb schema: calibrations, their inputs and audit events, products and their links.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calibration",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("instrument", sa.String(64), nullable=False),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("binning", sa.String(16), nullable=False),
        sa.Column("readout_mode", sa.String(64), nullable=False),
        sa.Column("raw_shape", sa.String(32), nullable=False),
        sa.Column("shape", sa.String(32), nullable=False),
        sa.Column("filter", sa.String(64), nullable=True),
        sa.Column("exposure_time", sa.Float(), nullable=True),
        sa.Column("temperature", sa.Float(), nullable=True),
        sa.Column("temperature_spread", sa.Float(), nullable=True),
        sa.Column("obs_time", sa.DateTime(), nullable=False),
        sa.Column("obs_start", sa.DateTime(), nullable=True),
        sa.Column("obs_end", sa.DateTime(), nullable=True),
        sa.Column("valid_from", sa.DateTime(), nullable=True),
        sa.Column("valid_to", sa.DateTime(), nullable=True),
        sa.Column("quality", sa.String(8), nullable=False),
        sa.Column("quality_reason", sa.Text(), nullable=True),
        sa.Column("quality_by", sa.String(64), nullable=True),
        sa.Column("quality_at", sa.DateTime(), nullable=True),
        sa.Column("n_combined", sa.Integer(), nullable=True),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("software_version", sa.String(64), nullable=True),
        sa.Column("config_hash", sa.String(64), nullable=True),
        sa.Column("ingested_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("sha256"),
    )
    op.create_index("ix_calibration_match", "calibration", ["type", "instrument", "obs_time"])

    op.create_table(
        "calibration_input",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("calibration_id", sa.Integer(),
                  sa.ForeignKey("calibration.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
    )
    op.create_index("ix_calibration_input_calibration_id", "calibration_input", ["calibration_id"])

    op.create_table(
        "calibration_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("calibration_id", sa.Integer(),
                  sa.ForeignKey("calibration.id", ondelete="CASCADE"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("who", sa.String(64), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
    )
    op.create_index("ix_calibration_event_calibration_id", "calibration_event", ["calibration_id"])

    op.create_table(
        "product",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("raw_name", sa.Text(), nullable=False),
        sa.Column("raw_sha256", sa.String(64), nullable=True),
        sa.Column("instrument", sa.String(64), nullable=False),
        sa.Column("frame_type", sa.String(32), nullable=False),
        sa.Column("obs_time", sa.DateTime(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=True),
        sa.Column("software_version", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("frame_meta", sa.JSON(), nullable=False),
    )
    op.create_index("ix_product_raw_sha256", "product", ["raw_sha256"])

    op.create_table(
        "product_calibration",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("product_id", sa.Integer(),
                  sa.ForeignKey("product.id", ondelete="CASCADE"), nullable=False),
        sa.Column("calibration_id", sa.Integer(), sa.ForeignKey("calibration.id"), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("receipt", sa.JSON(), nullable=False),
    )
    op.create_index("ix_product_calibration_product_id", "product_calibration", ["product_id"])
    op.create_index("ix_product_calibration_calibration_id", "product_calibration",
                    ["calibration_id"])


def downgrade() -> None:
    op.drop_table("product_calibration")
    op.drop_table("product")
    op.drop_table("calibration_event")
    op.drop_table("calibration_input")
    op.drop_table("calibration")
