"""caldb tables. Times are stored as naive UTC; equality keys as short strings ('2x2')."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base; the Alembic migrations are the source of truth for the schema."""


class Calibration(Base):
    """One master calibration file and everything needed to choose it."""

    __tablename__ = "calibration"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    instrument: Mapped[str] = mapped_column(String(64))
    #: Camera identity (INSTRUME, plus ' #serial'); gain and offset *settings* of a CMOS camera.
    #: NULL: not known (a record from before schema 0004, or frames that did not say); it
    #: matches only frames that do not say either (see migrations/versions/0004).
    camera: Mapped[str | None] = mapped_column(String(128))
    gain_setting: Mapped[str | None] = mapped_column(String(32))
    offset: Mapped[str | None] = mapped_column(String(32))
    detector: Mapped[str] = mapped_column(String(64))
    binning: Mapped[str] = mapped_column(String(16))
    readout_mode: Mapped[str] = mapped_column(String(64))
    raw_shape: Mapped[str] = mapped_column(String(32))
    shape: Mapped[str] = mapped_column(String(32))
    filter: Mapped[str | None] = mapped_column(String(64))
    exposure_time: Mapped[float | None] = mapped_column(Float)
    temperature: Mapped[float | None] = mapped_column(Float)
    temperature_spread: Mapped[float | None] = mapped_column(Float)
    obs_time: Mapped[datetime] = mapped_column(DateTime)
    obs_start: Mapped[datetime | None] = mapped_column(DateTime)
    obs_end: Mapped[datetime | None] = mapped_column(DateTime)
    valid_from: Mapped[datetime | None] = mapped_column(DateTime)
    valid_to: Mapped[datetime | None] = mapped_column(DateTime)
    quality: Mapped[str] = mapped_column(String(8), default="good")
    quality_reason: Mapped[str | None] = mapped_column(Text)
    quality_by: Mapped[str | None] = mapped_column(String(64))
    quality_at: Mapped[datetime | None] = mapped_column(DateTime)
    n_combined: Mapped[int | None] = mapped_column(Integer)
    #: The master QA at ingest (caldb/qa.py): figures, limits, the compared master's id, verdict.
    #: NULL: ingested before schema 0005, or by a bulk loader (no pixels were compared).
    qa: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    software_version: Mapped[str | None] = mapped_column(String(64))
    config_hash: Mapped[str | None] = mapped_column(String(64))
    ingested_at: Mapped[datetime] = mapped_column(DateTime)

    inputs: Mapped[list[CalibrationInput]] = relationship(
        back_populates="calibration", cascade="all, delete-orphan", order_by="CalibrationInput.id"
    )
    events: Mapped[list[CalibrationEvent]] = relationship(
        back_populates="calibration", cascade="all, delete-orphan", order_by="CalibrationEvent.id"
    )

    __table_args__ = (
        Index("ix_calibration_match", "type", "instrument", "obs_time"),
        # best(): equality gates, then the age window; filter last so counting flats is index-only.
        Index("ix_calibration_setup", "type", "instrument", "camera", "detector", "binning",
              "readout_mode", "gain_setting", "offset", "raw_shape", "obs_time", "filter"),
    )


class CalibrationInput(Base):
    """A raw frame that went into a master."""

    __tablename__ = "calibration_input"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    calibration_id: Mapped[int] = mapped_column(
        ForeignKey("calibration.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    calibration: Mapped[Calibration] = relationship(back_populates="inputs")


class CalibrationEvent(Base):
    """Audit trail: ingest, mark-bad, mark-good, certify, decertify, with who, when and why.

    Since schema 0005 ``details`` holds ``before`` and ``after``: the record's quality,
    quality_reason, valid_from and valid_to around the event (see caldb/asof.py), so the state
    of the database at any past time can be rebuilt from the events alone.
    """

    __tablename__ = "calibration_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    calibration_id: Mapped[int] = mapped_column(
        ForeignKey("calibration.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    who: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    calibration: Mapped[Calibration] = relationship(back_populates="events")


class Product(Base):
    """A reduced frame, with the frame metadata needed to re-run selection (for `stale`)."""

    __tablename__ = "product"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    raw_name: Mapped[str] = mapped_column(Text)
    raw_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    instrument: Mapped[str] = mapped_column(String(64))
    frame_type: Mapped[str] = mapped_column(String(32))
    obs_time: Mapped[datetime] = mapped_column(DateTime)
    config_hash: Mapped[str | None] = mapped_column(String(64))
    software_version: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    frame_meta: Mapped[dict[str, Any]] = mapped_column(JSON)

    calibrations: Mapped[list[ProductCalibration]] = relationship(
        back_populates="product", cascade="all, delete-orphan"
    )


class ProductCalibration(Base):
    """Which calibration a product used, and the selection receipt summary."""

    __tablename__ = "product_calibration"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"), index=True)
    calibration_id: Mapped[int] = mapped_column(ForeignKey("calibration.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    receipt: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    product: Mapped[Product] = relationship(back_populates="calibrations")
