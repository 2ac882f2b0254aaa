"""Cosmic-ray step: same masks as ccdproc.cosmicray_lacosmic (everywhere with edge_pad 0; with the
default reflection, everywhere on frames without stars or hits near the edge, and beyond 8 px
otherwise), star cores at the edge left alone, the GMOS cutout's two known hits,
simulated cosmic rays found (detection quality
against truth is measured separately, in bench/), and clear errors when the noise model is unknown."""

from __future__ import annotations

import astropy.units as u
import ccdproc
import numpy as np
import pytest
import scipy.ndimage as ndi
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.testing import make_meta, run_step

GMOS = "cosmic-ray-frames/gmos-s-S20190808S0048-cutout.fits"


def star_field_with_hits(shape=(128, 128), sky=200.0, gain=1.5, rn=6.0, seed=3):
    """ADU frame: sky, a few Gaussian stars (FWHM 3 px), and sharp one-to-three-pixel hits."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    electrons = np.full(shape, sky * gain)
    for y, x, flux in [(30, 40, 2e5), (90, 70, 5e4), (60, 100, 1e5), (100, 20, 3e4)]:
        electrons += flux / (2 * np.pi * 1.27**2) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.27**2))
    data = (rng.poisson(electrons) + rng.normal(0, rn, shape)) / gain
    hits = [(10, 10), (50, 50), (70, 20), (115, 110), (20, 90)]
    for i, (y, x) in enumerate(hits):
        data[y, x : x + 1 + i % 3] += 3000.0
    return data.astype(np.float32), hits


def cosmicray(ccd, meta, instrument=None, **params):
    """The cosmic-ray step on ``ccd`` described by ``meta`` (gain, read noise), generic by default."""
    return run_step("cosmicray", ccd, meta=meta, instrument=instrument, params=params)


@pytest.mark.parametrize("with_mask", [False, True])
def test_mask_identical_to_ccdproc_in_adu(with_mask):
    data, hits = star_field_with_hits()
    mask = None
    if with_mask:
        mask = np.zeros(data.shape, bool)
        mask[50, 50] = mask[5:8, 60:62] = True  # one hit already masked: must stay masked, not counted
    ccd = CCDData(data, unit="adu", mask=mask)
    ours = cosmicray(ccd, make_meta(shape=data.shape, gain=1.5, read_noise=6.0), sigclip=5.0, niter=2,
                     satlevel=60000.0)
    ref = ccdproc.cosmicray_lacosmic(ccd, sigclip=5.0, niter=2, gain=1.5 * u.electron / u.adu,
                                     readnoise=6.0 * u.electron, satlevel=60000.0 * 1.5)
    if mask is None:
        np.testing.assert_array_equal(ours.mask, ref.mask)
    else:
        # ccdproc gives the mask to astroscrappy, which grows it by a pixel: the second pixel of
        # the hit at (50, 50), beside the masked one, is missed there and found here
        near = ndi.binary_dilation(mask, np.ones((3, 3), bool))
        np.testing.assert_array_equal(ours.mask[~near], ref.mask[~near])
        assert ours.mask[50, 51] and not ref.mask[50, 51]
        assert ours.flags[50, 50] == 0 or not ours.flags[50, 50] & 16  # masked before: not a CR
    np.testing.assert_array_equal(ours.data, data)  # mask only by default
    for y, x in hits:
        assert ours.mask[y, x]
    new = ours.mask if mask is None else ours.mask & ~mask
    assert ours.header["CF_NCR"] == int(new.sum()) > 0
    assert not ours.mask[28:33, 38:43].any()  # the brightest star's core is left alone


def test_data_in_electrons_use_gain_one_like_ccdproc():
    data, _ = star_field_with_hits()
    ccd = CCDData(data * np.float32(1.5), unit="electron")
    ours = cosmicray(ccd, make_meta(shape=data.shape, gain=1.5, read_noise=6.0), fsmode="convolve",
                     sepmed=False, objlim=5.0)
    ref = ccdproc.cosmicray_lacosmic(ccd, gain=1.0, readnoise=6.0, fsmode="convolve", sepmed=False,
                                     objlim=5.0, satlevel=65535.0 * 1.5)
    np.testing.assert_array_equal(ours.mask, ref.mask)
    assert ours.header["CF_CRGN"] == 1.0 and ours.header["CF_CRRN"] == 6.0


def test_clean_replaces_only_flagged_pixels_and_keeps_adu():
    data, hits = star_field_with_hits()
    ccd = CCDData(data, unit="adu")
    out = cosmicray(ccd, make_meta(shape=data.shape, gain=1.5, read_noise=6.0), clean=True)
    np.testing.assert_array_equal(out.data[~out.mask], data[~out.mask])
    y, x = hits[0]
    assert abs(out.data[y, x] - 200.0) < 50.0  # back near the sky level, in ADU
    assert out.header["CF_CRCLN"] is True


def test_uncertainty_carried_and_used_as_variance_when_asked():
    data, _ = star_field_with_hits()
    std = np.sqrt(np.maximum(data * 1.5, 0) + 36.0) / 1.5
    ccd = CCDData(data, unit="adu", uncertainty=StdDevUncertainty(std.astype(np.float32)))
    out = cosmicray(ccd, make_meta(shape=data.shape, gain=1.5, read_noise=6.0), use_variance=True)
    np.testing.assert_array_equal(out.uncertainty.array, std.astype(np.float32))
    ref = ccdproc.cosmicray_lacosmic(ccd, gain=1.5 * u.electron / u.adu, readnoise=6.0 * u.electron,
                                     invar=(std**2).astype(np.float32), satlevel=65535.0 * 1.5)
    np.testing.assert_array_equal(out.mask, ref.mask)


def test_engines_give_the_same_step_result_and_the_header_says_which_ran():
    data, _ = star_field_with_hits()
    ccd = CCDData(data, unit="adu", uncertainty=StdDevUncertainty(np.sqrt(np.abs(data) / 1.5 + 16)))
    meta = make_meta(shape=data.shape, gain=1.5, read_noise=6.0)
    ours = cosmicray(ccd, meta, clean=True)
    theirs = cosmicray(ccd, meta, clean=True, engine="astroscrappy")
    assert (ours.header["CF_CRENG"], theirs.header["CF_CRENG"]) == ("ccdflow", "astroscrappy")
    np.testing.assert_array_equal(ours.mask, theirs.mask)
    np.testing.assert_array_equal(ours.data, theirs.data)
    assert ours.header["CF_NCR"] == theirs.header["CF_NCR"] > 0
    # what ccdflow's engine does not compute runs astroscrappy, and says so
    assert cosmicray(ccd, meta, fsmode="convolve").header["CF_CRENG"] == "astroscrappy"
    assert cosmicray(ccd, meta, cleantype="idw").header["CF_CRENG"] == "astroscrappy"


def test_gmos_cutout_has_exactly_its_two_known_cosmic_rays(real_data):
    path = real_data / GMOS
    with fits.open(path) as hdul:
        sci = hdul["SCI"].data.astype(np.float32)
        var = hdul["VAR"].data.astype(np.float32)
    # DRAGONS already converted to electrons: gain 1, read noise 4.24 e- (astroscrappy's test).
    meta = make_meta(path=str(path), shape=sci.shape, gain=1.933, read_noise=4.24)
    for ccd, params in [
        (CCDData(sci, unit="electron"), {}),
        (CCDData(sci, unit="electron", uncertainty=StdDevUncertainty(np.sqrt(var))), {"use_variance": True}),
    ]:
        # astroscrappy's own test boxes; its 3-px blind edge (no Laplacian excess there) cuts the
        # second track at row 147, which the reflected frame follows to the cutout's last row.
        for edge_pad, last_row in [(0, 147), (None, 150)]:
            out = cosmicray(ccd, meta, edge_pad=edge_pad, **params)
            labels, n = ndi.label(out.mask)
            assert n == 2, params
            known = [(slice(41, 72), slice(142, 161)), (slice(117, last_row), slice(35, 43))]
            assert ndi.find_objects(labels) == known
        assert sci.shape[0] == 150 and out.mask[149, 35:37].all()  # 546 and 1541 e- on a sky of ~60


def test_simulated_cosmic_rays_are_found(tmp_path):
    from ccdflow.simulator import SimulationSpec, simulate_night

    spec = SimulationSpec(shape=(128, 128), overscan=0, n_bias=0, n_dark=0, n_flat=0, filters=("V",),
                          n_science=1, n_stars=150, n_saturated_stars=0, cosmic_ray_rate=40.0,
                          seed=11)
    night = simulate_night(tmp_path, spec)
    (raw,) = sorted(night.raw_dir.glob("*sci*.fits"))
    ccd = CCDData(fits.getdata(raw).astype(np.float32) - np.float32(spec.bias_level), unit="adu")
    out = cosmicray(ccd, make_meta(shape=ccd.shape, gain=spec.gain, read_noise=spec.read_noise))
    cr = fits.getdata(night.truth_dir / f"cr_{raw.stem}.fits") > 0
    sky = fits.getdata(night.truth_dir / f"sky_{raw.stem}.fits")
    excess = ccd.data * spec.gain - sky  # e- the hit added (flat ~1)
    bright = cr & (excess > 5 * np.sqrt(np.maximum(sky, 0) + spec.read_noise**2))
    assert bright.sum() > 50
    assert out.mask[bright].mean() >= 0.9
    assert out.header["CF_NCR"] == int(out.mask.sum())


def test_missing_gain_names_the_keyword():
    data = np.random.default_rng(1).normal(100.0, 5.0, (32, 32)).astype(np.float32)
    inst = Instrument.model_validate({
        "name": "nogain", "header": {"frame_type": {"keyword": "IMAGETYP"}, "exposure_time": {},
                                     "date_obs": {}, "gain": {"keyword": ["EGAIN"]}},
    })
    with pytest.raises(UnprocessableInputError, match=r"needs the gain.*keyword EGAIN, not present"):
        cosmicray(CCDData(data, unit="adu"), make_meta(shape=data.shape, read_noise=5.0), inst)
    with pytest.raises(UnprocessableInputError, match=r"read noise.*the header map reads no read noise"):
        cosmicray(CCDData(data, unit="adu"), make_meta(shape=data.shape, gain=1.0), inst)
    with_default = inst.model_copy(update={"gain": 2.0, "read_noise": 5.0})
    out = cosmicray(CCDData(data, unit="adu"), make_meta(shape=data.shape), with_default)
    assert out.header["CF_CRGN"] == 2.0


def edge_field(seed=0):
    """64x64 e- frame, sky 300: three stars (FWHM 3 px, 2e4 e-) centred 2-3 px from an edge or
    corner, one inside, and hits of 2000 e- on the edge rows/columns and one inside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    electrons = np.full((64, 64), 300.0)
    for y, x in [(30, 3), (61, 40), (3, 60), (35, 35)]:
        electrons += 2e4 / (2 * np.pi * 1.27**2) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.27**2))
    cores = electrons - 300.0 > 20 * np.sqrt(300.0 + 25.0)
    data = rng.poisson(electrons) + rng.normal(0, 5.0, electrons.shape)
    hits = [(50, 0), (63, 20), (63, 21), (12, 63), (0, 10), (20, 20)]
    for y, x in hits:
        data[y, x] += 2000.0
    return data.astype(np.float32), cores, hits


def test_star_at_the_edge_is_not_flagged_and_edge_hits_are():
    data, cores, hits = edge_field()
    ccd = CCDData(data, unit="electron")
    meta = make_meta(shape=data.shape, gain=1.0, read_noise=5.0)
    ours = cosmicray(ccd, meta)
    bare = cosmicray(ccd, meta, edge_pad=0)  # astroscrappy's own edges
    ref = ccdproc.cosmicray_lacosmic(ccd, gain=1.0, readnoise=5.0, satlevel=65535.0)
    np.testing.assert_array_equal(bare.mask, ref.mask)
    assert (bare.mask & cores).sum() > 20  # the edge stars' cores, flagged whole
    assert [bool(bare.mask[h]) for h in hits] == [False] * 5 + [True]  # its 3-px blind edge
    assert not (ours.mask & cores).any()
    assert all(ours.mask[h] for h in hits)
    # only the edge handling differs: ccdproc's mask is ours beyond the 8 px reflection
    inside = (slice(8, -8),) * 2
    np.testing.assert_array_equal(ours.mask[inside], ref.mask[inside])
    assert ours.header["CF_NCR"] == int(ours.mask.sum()) < 3 * len(hits)
