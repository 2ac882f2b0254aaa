"""Camera identity and CMOS settings on calibration records: calibrations never cross cameras.

Adds ``camera`` (the header's INSTRUME, plus ' #<serial>' where the instrument maps a serial
number), ``gain_setting`` and ``offset`` (a CMOS camera's unitless settings, as text) to
``calibration``, and puts them into ``ix_calibration_setup`` among the other equality gates.

Records that exist when this runs get NULL in all three: nobody recorded which camera made
them, and guessing (from the instrument config, or the first camera seen afterwards) could hand
one camera's bias to another. NULL means *unknown*, and selection compares it by equality:

- a frame whose header names no camera (no INSTRUME) matches a NULL record, as before;
- a frame of a known camera never takes a NULL record: an unknown camera is not silently
  assumed to be this one. The receipt says ``camera: need 'X', is unknown``;
- likewise for ``gain_setting`` and ``offset`` (a CCD's headers give neither, so its frames
  keep matching its old records on these two).

So after upgrading, frames whose headers name their camera need masters built by this
ccdflow: re-run ``ccdflow night`` on the calibration frames (masters are rebuilt under new
names; the old records stay, usable by pin). To use an old master anyway, pin it with
``--waive``: a record of unknown camera can be waived, one of another known camera never.
docs/caldb.md ("Camera identity") says the same for users.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_OLD_SETUP = ["type", "instrument", "detector", "binning", "readout_mode", "raw_shape", "obs_time",
              "filter"]
_NEW_SETUP = ["type", "instrument", "camera", "detector", "binning", "readout_mode", "gain_setting",
              "offset", "raw_shape", "obs_time", "filter"]


def upgrade() -> None:
    # ADD COLUMN of a nullable column: no table rebuild on SQLite, no rewrite on PostgreSQL.
    op.add_column("calibration", sa.Column("camera", sa.String(128), nullable=True))
    op.add_column("calibration", sa.Column("gain_setting", sa.String(32), nullable=True))
    op.add_column("calibration", sa.Column("offset", sa.String(32), nullable=True))
    op.drop_index("ix_calibration_setup", table_name="calibration")
    op.create_index("ix_calibration_setup", "calibration", _NEW_SETUP)


def downgrade() -> None:
    op.drop_index("ix_calibration_setup", table_name="calibration")
    op.create_index("ix_calibration_setup", "calibration", _OLD_SETUP)
    with op.batch_alter_table("calibration") as batch:  # SQLite drops columns by a rebuild
        batch.drop_column("offset")
        batch.drop_column("gain_setting")
        batch.drop_column("camera")
