"""`ccdflow inspect`: the instrument, every value with its keyword and raw value, the frame type,
the calibration group and the warnings, as text and JSON; the real ZWO set read with a YAML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccdflow.cli import EXIT_INPUT, cli
from tests.test_header_wild import raw_fits

ZWO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "zwo-asi120mc-cmos"

ZWO_YAML = """\
name: zwo-inspect-test
extends: generic
identify:
  INSTRUME: "ZWO ASI120*"
header:
  gain: {keyword: []}
  gain_setting: {keyword: [GAIN]}
  offset: {keyword: [OFFSET]}
  frame_type_paths: {"Bias/*": bias, "Dark*/*": dark, "Flat/*": flat}
"""


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["inspect", *args])
    return result.exit_code, result.output


def test_inspect_says_where_every_value_came_from(tmp_path):
    path = raw_fits(tmp_path / "f.fits", EXPTIME=None, EXPOINUS="64", INSTRUME="'SBIG ST-7'",
                    **{"DATE__OBS": "'2019-08-08'", "UTCSTART": "'01:02:03'"})
    status, out = run(path, "--instrument", "generic", "--json")
    assert status == 0, out
    (found,) = json.loads(out)
    assert (found["instrument"], found["chosen_by"], found["frame_type"]) == (
        "generic", "--instrument", "science")
    fields = {f["field"]: f for f in found["fields"]}
    assert (fields["exposure_time"]["keyword"], fields["exposure_time"]["raw"]) == ("EXPOINUS", 64)
    assert fields["exposure_time"]["value"] == 6.4e-05
    assert "64 us -> 6.4e-05 s" in fields["exposure_time"]["notes"]
    assert fields["date_obs"]["notes"] == ["time of day from UTCSTART"]
    assert fields["camera"]["value"] == "SBIG ST-7"
    assert fields["filter"]["value"] is None and "FILTER or FILTER1" in fields["filter"]["notes"][0]
    assert found["group"]["camera"] == "SBIG ST-7" and found["group"]["night"] == "2019-08-07"
    assert found["identification"]["generic"] == "matches: IMAGETYP='LIGHT' ~ '*'"
    assert "not matched: INSTRUME='SBIG ST-7'" in found["identification"]["efosc2"]


def test_inspect_names_why_a_file_cannot_be_used(tmp_path):
    path = raw_fits(tmp_path / "f.fits", IMAGETYP=None)
    status, out = run(path)
    assert status == EXIT_INPUT
    assert "generic: not matched: IMAGETYP absent" in out
    assert "cannot be used" in out and "no instrument recognises" in out


@pytest.mark.skipif(not ZWO.is_dir(), reason=f"real data not available: {ZWO} is missing")
def test_inspect_reads_the_real_zwo_set_with_a_yaml(tmp_path):
    yaml = tmp_path / "zwo.yaml"
    yaml.write_text(ZWO_YAML)
    status, out = run(str(ZWO), "--instrument-config", str(yaml), "--json")
    assert status == 0, out
    found = json.loads(out)
    assert len(found) == 40
    kinds = {f["path"]: f["frame_type"] for f in found}
    assert sorted(kinds.values()).count("bias") == 15 and sorted(kinds.values()).count("flat") == 10
    bias = next(f for f in found if f["frame_type"] == "bias")
    assert bias["instrument"] == "zwo-inspect-test"
    exposure = next(f for f in bias["fields"] if f["field"] == "exposure_time")
    assert (exposure["keyword"], exposure["raw"], exposure["value"]) == ("EXPTIME", "6,4E-05", 6.4e-05)
    assert any("decimal comma" in w for w in bias["warnings"])
    assert (bias["group"]["gain_setting"], bias["group"]["offset"]) == ("0", "9")
    status, text = run(str(ZWO / "Bias" / "Bias_ASIImg_frame0001.fit"), "--instrument-config", str(yaml))
    assert status == 0 and "decimal comma in '6,4E-05'" in text and "calibration group" in text


def test_inspect_says_which_gain_and_read_noise_the_steps_will_use(tmp_path):
    """From a table per gain setting, or nowhere: then a warning naming the YAML keys (the
    science recipe's uncertainty, gain and cosmic-ray steps would refuse the frame)."""
    cam = tmp_path / "cmos.yaml"
    cam.write_text("extends: generic\nname: cmos-test\nheader:\n  gain: {keyword: []}\n"
                   "  gain_setting: {keyword: [GAIN]}\ngain_table: {'120': 0.25}\n")
    path = raw_fits(tmp_path / "f.fits", GAIN="120")
    status, out = run(path, "--instrument-config", str(cam), "--instrument", "cmos-test", "--json")
    assert status == 0, out
    (found,) = json.loads(out)
    fields = {f["field"]: f for f in found["fields"]}
    assert fields["gain used"]["value"] == "0.25 e-/ADU"
    assert fields["gain used"]["notes"] == ["from gain_table['120']"]
    assert fields["read_noise used"]["notes"] == ["none"]
    (warning,) = [w for w in found["warnings"] if w.startswith("no read noise")]
    assert "uncertainty" in warning and "read_noise_table:" in warning and "assume:" in warning


def test_a_truncated_file_is_explained_and_refused_as_in_a_night(tmp_path):
    path = Path(raw_fits(tmp_path / "f.fits"))
    path.write_bytes(path.read_bytes()[:2880 + 1000])  # an interrupted copy
    status, out = run(str(path), "--instrument", "generic", "--json")
    assert status == EXIT_INPUT
    (found,) = json.loads(out)
    assert found["error"].endswith("FITS file is truncated (File may have been truncated: actual file "
                                   "length (3880) is smaller than the expected size (8640))")
    assert found["frame_type"] == "science"  # the header is still read and explained
